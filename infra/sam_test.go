package infra

// Tests of template.yaml, the SAM template of the Lambda deployment: every
// intrinsic resolves, the functions, routes, queue, alarms and outputs are
// as the service needs them, the Makefile builds what SAM asks for, and
// the build really produces a static arm64 bootstrap.

import (
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// samChecks are the checks that need only the template.
var samChecks = map[string]func(*cfnTemplate) []string{
	"references":    cfnCheckReferences,
	"functions":     samCheckFunctions,
	"make targets":  samCheckMakeTargets,
	"routes":        samCheckRoutes,
	"runtime":       samCheckRuntimeSettings,
	"failure queue": samCheckFailureQueue,
	"alarms":        samCheckAlarms,
	"eventbridge":   samCheckEventBridge,
	"outputs":       samCheckOutputs,
}

func TestSAMTemplate(t *testing.T) {
	t.Parallel()
	tpl := cfnLoad(t)
	if v, _ := cfnScalar(cfnGet(tpl.root, "Transform")); v != "AWS::Serverless-2016-10-31" {
		t.Errorf("Transform %q, want AWS::Serverless-2016-10-31", v)
	}
	for name, check := range samChecks {
		t.Run(name, func(t *testing.T) {
			for _, p := range check(tpl) {
				t.Error(p)
			}
		})
	}
	t.Run("environment", func(t *testing.T) {
		flags, err := samIdgenFlags()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range samCheckEnvironment(tpl, flags) {
			t.Error(p)
		}
	})
}

// TestSAMChecksCatchBreakage breaks the template one way at a time and
// expects the check responsible to say so: a check that cannot fail checks
// nothing.
func TestSAMChecksCatchBreakage(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(cfnTemplatePath())
	if err != nil {
		t.Fatal(err)
	}
	envCheck := func(tpl *cfnTemplate) []string {
		flags, err := samIdgenFlags()
		if err != nil {
			return []string{err.Error()}
		}
		return samCheckEnvironment(tpl, flags)
	}
	cases := []struct {
		name, old, new string
		want           string // a problem the check must report
		all            bool   // replace every occurrence, not only the first
		check          func(*cfnTemplate) []string
	}{
		{name: "Ref to nothing", want: "\"ZooKeeperServer\" is no parameter", old: "IDGEN_ZOOKEEPER: !Ref ZooKeeperServers", new: "IDGEN_ZOOKEEPER: !Ref ZooKeeperServer", check: cfnCheckReferences},
		{name: "long-form Ref to nothing", want: "\"FailureDeadLetters\" is no parameter", old: "Queues: [!Ref FailureDLQ]", new: "Queues: [{Ref: FailureDeadLetters}]", check: cfnCheckReferences},
		{name: "long-form GetAtt to nothing", want: "GetAtt names no resource \"FailureDeadLetters\"", old: "Value: !GetAtt FailureDLQ.Arn", new: `Value: {"Fn::GetAtt": [FailureDeadLetters, Arn]}`, check: cfnCheckReferences},
		{name: "Sub pseudo parameter misspelt", want: "\"AWS::StackNam\" is no parameter", old: "/aws/lambda/${AWS::StackName}-generate", new: "/aws/lambda/${AWS::StackNam}-generate", check: cfnCheckReferences},
		{name: "Sub resource misspelt", want: "\"HttpAPI\" is no parameter", old: "https://${HttpApi}.execute-api", new: "https://${HttpAPI}.execute-api", check: cfnCheckReferences},
		{name: "Sub attribute of nothing", want: "has no attribute \"Nope\"", old: "https://${HttpApi}.execute-api", new: "https://${HttpApi.Nope}.execute-api", check: cfnCheckReferences},
		{name: "Sub list form", want: "\"Where\" is no parameter", old: "!Sub https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/", new: "!Sub [\"https://${Api}.execute-api.${Where}/\", {Api: !Ref HttpApi}]", check: cfnCheckReferences},
		{name: "Sub unterminated", want: "unterminated ${", old: "/aws/lambda/${AWS::StackName}-compensate", new: "/aws/lambda/${AWS::StackName-compensate", check: cfnCheckReferences},
		{name: "GetAtt to nothing", want: "GetAtt names no resource \"FailureDeadLetters\"", old: "deadLetterTargetArn: !GetAtt FailureDLQ.Arn", new: "deadLetterTargetArn: !GetAtt FailureDeadLetters.Arn", check: cfnCheckReferences},
		{name: "GetAtt unknown attribute", want: "has no attribute \"Name\"", old: "Value: !GetAtt FailureDLQ.QueueName", new: "Value: !GetAtt FailureDLQ.Name", check: cfnCheckReferences},
		{name: "unknown tag", want: "unknown tag !Reff", old: "Endpoint: !Ref AlarmEmail", new: "Endpoint: !Reff AlarmEmail", check: cfnCheckReferences},
		{name: "If on undefined condition", want: "condition \"HasProvisioned\" is not defined", old: "- HasProvisionedConcurrency\n", new: "- HasProvisioned\n", check: cfnCheckReferences},
		{name: "resource Condition undefined", want: "condition \"HasAlarmMail\" is not defined", old: "Condition: HasAlarmEmail\n    Properties:\n      DisplayName", new: "Condition: HasAlarmMail\n    Properties:\n      DisplayName", check: cfnCheckReferences},
		{name: "!Condition undefined", want: "condition \"HasPasswordFile\" is not defined", old: "!Not [!Condition HasRedisPasswordFile]", new: "!Not [!Condition HasPasswordFile]", check: cfnCheckReferences},
		{name: "condition never used", want: "Conditions.Unused: defined but never used", old: "Conditions:\n", new: "Conditions:\n  Unused: !Equals [a, b]\n", check: cfnCheckReferences},
		{name: "condition function in a resource", want: "Fn::Equals outside Conditions", old: "Threshold: !Ref Api5xxThreshold", new: "Threshold: !Equals [1, 1]", check: cfnCheckReferences},
		{name: "parameter never used", want: "Parameters.Api5xxThreshold: defined but never used", old: "Threshold: !Ref Api5xxThreshold", new: "Threshold: 10", check: cfnCheckReferences},
		{name: "If arity", want: "Fn::If wants a list of 3..3", old: "IDGEN_JWT_ISSUER: !If [HasJwtIssuer, !Ref JwtIssuer, !Ref AWS::NoValue]", new: "IDGEN_JWT_ISSUER: !If [HasJwtIssuer, !Ref JwtIssuer]", check: cfnCheckReferences},
		{name: "Rule Refs a resource", want: "\"FailureQueue\" is no parameter", old: "!Equals [!Ref RedisCluster, \"false\"]", new: "!Equals [!Ref FailureQueue, \"false\"]", check: cfnCheckReferences},
		{name: "runtime", want: "Runtime \"provided.al2\"", old: "Handler: generate\n      Runtime: provided.al2023", new: "Handler: generate\n      Runtime: provided.al2", check: samCheckFunctions},
		{name: "architecture", want: "Architectures must be [arm64]", old: "Runtime: provided.al2023\n      Architectures: [arm64]\n      MemorySize: 256", new: "Runtime: provided.al2023\n      Architectures: [x86_64]\n      MemorySize: 256", check: samCheckFunctions},
		{name: "handler", want: "Handler \"bootstrap\"", old: "Handler: compensate", new: "Handler: bootstrap", check: samCheckFunctions},
		{name: "build method", want: "BuildMethod \"go1.x\"", old: "BuildMethod: makefile", new: "BuildMethod: go1.x", check: samCheckFunctions},
		{name: "no make target", want: "No rule to make target 'build-CompensateFn'", old: "CompensateFunction", new: "CompensateFn", all: true, check: samCheckMakeTargets},
		{name: "route missing", want: "route \"GET /metrics\" of the contract has no HttpApi event", old: "        Metrics:\n          Type: HttpApi\n          Properties: { ApiId: !Ref HttpApi, Method: GET, Path: /metrics }\n", new: "", check: samCheckRoutes},
		{name: "route not in contract", want: "route \"GET /metricz\" is not in the contract", old: "Method: GET, Path: /metrics", new: "Method: GET, Path: /metricz", check: samCheckRoutes},
		{name: "route method", want: "route \"PUT /commit\" is not in the contract", old: "Method: POST, Path: /commit", new: "Method: PUT, Path: /commit", check: samCheckRoutes},
		{name: "path parameter syntax", want: "path \"/ids/:id\" is not API Gateway route syntax", old: `Path: "/ids/{id}"`, new: `Path: "/ids/:id"`, check: samCheckRoutes},
		{name: "no $default route", want: "0 $default routes", old: "        Default:\n          Type: HttpApi\n          Properties: { ApiId: !Ref HttpApi }\n", new: "", check: samCheckRoutes},
		{name: "named stage", want: "StageName \"prod\"", old: "Description: idgen HTTP API (every route goes to the generate function)", new: "StageName: prod", check: samCheckRoutes},
		{name: "no partial batch response", want: "without FunctionResponseTypes [ReportBatchItemFailures]", old: "FunctionResponseTypes: [ReportBatchItemFailures]", new: "FunctionResponseTypes: []", check: samCheckFailureQueue},
		{name: "batch size literal", want: "BatchSize must Ref a parameter", old: "BatchSize: !Ref CompensateBatchSize", new: "BatchSize: 10", check: samCheckFailureQueue},
		{name: "no redrive policy", want: "no RedrivePolicy", old: "      RedrivePolicy:\n        deadLetterTargetArn: !GetAtt FailureDLQ.Arn\n        maxReceiveCount: !Ref MaxReceiveCount\n", new: "", check: samCheckFailureQueue},
		{name: "redrive to itself", want: "no RedrivePolicy", old: "deadLetterTargetArn: !GetAtt FailureDLQ.Arn", new: "deadLetterTargetArn: !GetAtt FailureQueue.Arn", check: samCheckFailureQueue},
		{name: "visibility timeout short", want: "VisibilityTimeout 180 < 6 x Timeout (30) + max batching window (30)", old: "VisibilityTimeout: 210", new: "VisibilityTimeout: 180", check: samCheckFailureQueue},
		{name: "batching window unbounded", want: "the batching window must be bounded", old: "    MinValue: 0\n    MaxValue: 30\n", new: "    MinValue: 0\n", check: samCheckFailureQueue},
		{name: "DLQ retention", want: "DLQ retention 345600 must exceed", old: "MessageRetentionPeriod: 1209600", new: "MessageRetentionPeriod: 345600", check: samCheckFailureQueue},
		{name: "DLQ alarm metric", want: "no alarm on the DLQ", old: "MetricName: ApproximateNumberOfMessagesVisible", new: "MetricName: NumberOfMessagesSent", check: samCheckAlarms},
		{name: "DLQ alarm on the wrong queue", want: "no alarm on the DLQ", old: "Value: !GetAtt FailureDLQ.QueueName", new: "Value: !GetAtt FailureQueue.QueueName", check: samCheckAlarms},
		{name: "DLQ alarm threshold", want: "fires on GreaterThanThreshold 5", old: "      Threshold: 0\n      ComparisonOperator: GreaterThanThreshold\n      TreatMissingData: notBreaching\n      AlarmActions: !If [HasAlarmEmail, [!Ref AlarmTopic], !Ref AWS::NoValue]\n      OKActions", new: "      Threshold: 5\n      ComparisonOperator: GreaterThanThreshold\n      TreatMissingData: notBreaching\n      AlarmActions: !If [HasAlarmEmail, [!Ref AlarmTopic], !Ref AWS::NoValue]\n      OKActions", check: samCheckAlarms},
		{name: "no Errors alarm for compensate", want: "CompensateFunction: no Errors alarm", old: "MetricName: Errors\n      Dimensions:\n        - Name: FunctionName\n          Value: !Ref CompensateFunction", new: "MetricName: Errors\n      Dimensions:\n        - Name: FunctionName\n          Value: !Ref GenerateFunction", check: samCheckAlarms},
		{name: "no Throttles alarm for generate", want: "GenerateFunction: no Throttles alarm", old: "MetricName: Throttles\n      Dimensions:\n        - Name: FunctionName\n          Value: !Ref GenerateFunction", new: "MetricName: Invocations\n      Dimensions:\n        - Name: FunctionName\n          Value: !Ref GenerateFunction", check: samCheckAlarms},
		{name: "alarm without action", want: "FailureDLQDepthAlarm: AlarmActions must notify the SNS topic", old: "      AlarmActions: !If [HasAlarmEmail, [!Ref AlarmTopic], !Ref AWS::NoValue]\n      OKActions", new: "      OKActions", check: samCheckAlarms},
		{name: "rule not optional", want: "the rule must be optional", old: "    Condition: EventBridgeEnabled\n    Properties:\n      Description: idgen failure events", new: "    Properties:\n      Description: idgen failure events", check: samCheckEventBridge},
		{name: "rule targets another function", want: "no target !GetAtt CompensateFunction.Arn", old: "Arn: !GetAtt CompensateFunction.Arn\n          RetryPolicy", new: "Arn: !GetAtt GenerateFunction.Arn\n          RetryPolicy", check: samCheckEventBridge},
		{name: "permission condition differs", want: "Condition \"HasAlarmEmail\", want the rule's \"EventBridgeEnabled\"", old: "    Condition: EventBridgeEnabled\n    Properties:\n      Action: lambda:InvokeFunction", new: "    Condition: HasAlarmEmail\n    Properties:\n      Action: lambda:InvokeFunction", check: samCheckEventBridge},
		{name: "no API URL output", want: "no output with the API URL", old: "Value: !Sub https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/", new: "Value: !Ref HttpApi", check: samCheckOutputs},
		{name: "no DLQ ARN output", want: "no output GetAtt FailureDLQ.Arn", old: "Value: !GetAtt FailureDLQ.Arn\n", new: "Value: !Ref FailureDLQ\n", check: samCheckOutputs},
		{name: "env variable misspelt", want: "IDGEN_REDIS_WAIT is not a variable of idgen serve", old: "IDGEN_REDIS_WAIT_REPLICAS: !Ref RedisWaitReplicas", new: "IDGEN_REDIS_WAIT: !Ref RedisWaitReplicas", check: envCheck},
		{name: "serve-only variable on compensate", want: "IDGEN_SHARD is not a variable of idgen compensate", old: "IDGEN_REDIS_RETENTION: !Ref RedisRetention\n          IDGEN_AUDIT_LOG: \"-\"\n          IDGEN_LOG_LEVEL: !Ref LogLevel\n      Events:\n        FailureQueue", new: "IDGEN_REDIS_RETENTION: !Ref RedisRetention\n          IDGEN_SHARD: !Ref Shard\n          IDGEN_AUDIT_LOG: \"-\"\n          IDGEN_LOG_LEVEL: !Ref LogLevel\n      Events:\n        FailureQueue", check: envCheck},
		{name: "bool variable not a bool", want: "IDGEN_REDIS_CLUSTER=\"yes\" is not a bool", old: "IDGEN_REDIS_CLUSTER: !If [IsRedisCluster, \"true\", !Ref AWS::NoValue]", new: "IDGEN_REDIS_CLUSTER: !If [IsRedisCluster, \"yes\", !Ref AWS::NoValue]", check: envCheck},
		{name: "required variable conditional", want: "IDGEN_REDIS_ADDR is required, it must not depend on a condition", old: "IDGEN_REDIS_ADDR: !Ref RedisAddr", new: "IDGEN_REDIS_ADDR: !If [IsSentinel, !Ref RedisAddr, !Ref AWS::NoValue]", check: envCheck},
		{name: "sentinel not optional", want: "IDGEN_REDIS_MASTER must be optional", old: "IDGEN_REDIS_MASTER: !If [IsSentinel, !Ref RedisMaster, !Ref AWS::NoValue]", new: "IDGEN_REDIS_MASTER: !Ref RedisMaster", check: envCheck},
		{name: "password literal", want: "IDGEN_REDIS_PASSWORD must come from a Secrets Manager dynamic reference", old: "- !Sub \"{{resolve:secretsmanager:${RedisPasswordSecretId}:SecretString:password}}\"", new: "- hunter2", check: envCheck},
		{name: "password from a plain parameter", want: "IDGEN_REDIS_PASSWORD must come from a Secrets Manager dynamic reference", old: "- !Sub \"{{resolve:secretsmanager:${RedisPasswordSecretId}:SecretString:password}}\"", new: "- !Ref RedisPasswordSecretId", check: envCheck},
		{name: "data dir read-only", want: "IDGEN_DATA_DIR \"./data\" is not writable", old: "IDGEN_DATA_DIR: /tmp/idgen", new: "IDGEN_DATA_DIR: ./data", check: envCheck},
		{name: "request timeout above function timeout", want: "IDGEN_REQUEST_TIMEOUT 15s must stay below the function Timeout (10s)", old: "    Default: 5s\n", new: "    Default: 15s\n", check: envCheck},
		{name: "dev mode", want: "IDGEN_DEV turns authentication off", old: "IDGEN_DATA_DIR: /tmp/idgen", new: "IDGEN_DATA_DIR: /tmp/idgen\n          IDGEN_DEV: \"true\"", check: envCheck},
		{name: "reserved concurrency unbounded", want: "ReservedConcurrentExecutions must be bounded", old: "    MinValue: 1\n    MaxValue: 4096\n", new: "    MinValue: 1\n", check: samCheckRuntimeSettings},
		{name: "no VPC", want: "VpcConfig.SubnetIds must Ref a parameter", old: "      VpcConfig:\n        SubnetIds: !Ref SubnetIds\n        SecurityGroupIds: !Ref SecurityGroupIds\n", new: "", check: samCheckRuntimeSettings},
		{name: "log group without retention", want: "has no RetentionInDays", old: "      RetentionInDays: !Ref LogRetentionDays\n", new: "", check: samCheckRuntimeSettings},
		{name: "compensate unbounded", want: "CompensateFunction: concurrency unbounded", old: "            ScalingConfig:\n              MaximumConcurrency: !Ref CompensateMaxConcurrency\n", new: "", check: samCheckRuntimeSettings},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(src), c.old) {
				t.Fatalf("the template no longer contains %q: update this case", c.old)
			}
			n := 1
			if c.all {
				n = -1
			}
			broken := strings.Replace(string(src), c.old, c.new, n)
			tpl, err := cfnParse(broken)
			if err != nil {
				t.Fatalf("broken template does not parse (the case should break a check, not YAML): %v", err)
			}
			problems := c.check(tpl)
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Fatalf("replacing %q by %q: no problem mentions %q; got %q", c.old, c.new, c.want, problems)
		})
	}
}

// TestSAMBuildBootstrap runs what `sam build` runs for GenerateFunction and
// checks the result is what provided.al2023 on arm64 executes: a static
// (no interpreter, no shared libraries), executable arm64 ELF named
// bootstrap, built without cgo, trimmed, with the lambda.norpc tag.
func TestSAMBuildBootstrap(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command("make", "-C", "..", "build-GenerateFunction", "ARTIFACTS_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build-GenerateFunction: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "bootstrap")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o111 == 0 {
		t.Errorf("bootstrap is not executable: %v", st.Mode())
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("bootstrap is not an ELF file: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 || f.Class != elf.ELFCLASS64 {
		t.Errorf("bootstrap is %v/%v, want EM_AARCH64/ELFCLASS64", f.Machine, f.Class)
	}
	if f.Type != elf.ET_EXEC {
		t.Errorf("bootstrap type %v, want ET_EXEC (static executable)", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("bootstrap has a PT_INTERP (dynamic loader): not static")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("bootstrap needs shared libraries %v (%v)", libs, err)
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatalf("build info: %v", err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"GOOS": "linux", "GOARCH": "arm64", "CGO_ENABLED": "0", "-trimpath": "true", "-tags": "lambda.norpc"} {
		if settings[k] != want {
			t.Errorf("build setting %s=%q, want %q", k, settings[k], want)
		}
	}
	if info.Path != "github.com/idgen/idgen/cmd/idgen" {
		t.Errorf("bootstrap is %s, want github.com/idgen/idgen/cmd/idgen", info.Path)
	}
}
