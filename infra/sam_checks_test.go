package infra

// The checks of template.yaml, each a function from the parsed template to
// its problems, so that sam_test.go can run them on the real template and
// on deliberately broken copies of it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// samFunctions are the functions the template must define, with the
// Handler that selects each in the one binary (cmd/idgen/lambda.go reads it
// from _HANDLER).
var samFunctions = map[string]string{"GenerateFunction": "generate", "CompensateFunction": "compensate"}

// samHandlerCommand is the idgen command whose flags (and so IDGEN_*
// variables) configure each handler.
var samHandlerCommand = map[string]string{"generate": "serve", "compensate": "compensate"}

// samContractRoutes are the operations of the HTTP API's contract,
// api/openapi.json ("METHOD /path"): the template routes each of them to
// the generate function, so a route added to the contract needs its event.
func samContractRoutes() ([]string, error) {
	b, err := os.ReadFile(filepath.Join("..", "api", "openapi.json"))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("api/openapi.json: %w", err)
	}
	var routes []string
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
				routes = append(routes, strings.ToUpper(method)+" "+path)
			}
		}
	}
	if len(routes) == 0 {
		return nil, errors.New("api/openapi.json has no operations")
	}
	return routes, nil
}

const samRuntime, samArch = "provided.al2023", "arm64"

// samGoArch maps Lambda architectures to GOARCH.
var samGoArch = map[string]string{"arm64": "arm64", "x86_64": "amd64"}

type samProblems []string

func (p *samProblems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// samFunctionByHandler returns the logical ID of the function with handler h.
func samFunctionByHandler(t *cfnTemplate, h string) (string, *yaml.Node) {
	for _, id := range t.cfnResourcesOfType("AWS::Serverless::Function") {
		if v, _ := cfnScalar(cfnPath(t.Resources[id], "Properties", "Handler")); v == h {
			return id, t.Resources[id]
		}
	}
	return "", nil
}

// samCheckFunctions: exactly the two functions, each on provided.al2023 /
// arm64 with its Handler, built from the repository root by the Makefile.
func samCheckFunctions(t *cfnTemplate) []string {
	var p samProblems
	ids := t.cfnResourcesOfType("AWS::Serverless::Function")
	var want []string
	for id := range samFunctions {
		want = append(want, id)
	}
	sort.Strings(want)
	if strings.Join(ids, ",") != strings.Join(want, ",") {
		p.add("functions %v, want %v", ids, want)
	}
	for _, id := range ids {
		r := t.Resources[id]
		props := cfnGet(r, "Properties")
		if h, _ := cfnScalar(cfnGet(props, "Handler")); h != samFunctions[id] {
			p.add("%s: Handler %q, want %q", id, h, samFunctions[id])
		}
		if v, _ := cfnScalar(cfnGet(props, "Runtime")); v != samRuntime {
			p.add("%s: Runtime %q, want %s", id, v, samRuntime)
		}
		arch := cfnGet(props, "Architectures")
		if arch == nil || arch.Kind != yaml.SequenceNode || len(arch.Content) != 1 || arch.Content[0].Value != samArch {
			p.add("%s: Architectures must be [%s]", id, samArch)
		}
		if v, _ := cfnScalar(cfnGet(props, "CodeUri")); v != "." {
			p.add("%s: CodeUri %q, want . (the repository root, where the Makefile is)", id, v)
		}
		if v, _ := cfnScalar(cfnPath(r, "Metadata", "BuildMethod")); v != "makefile" {
			p.add("%s: Metadata.BuildMethod %q, want makefile", id, v)
		}
		if _, ok := t.cfnInt(cfnGet(props, "Timeout")); !ok {
			p.add("%s: Timeout must be set (a literal: the queue's visibility depends on it)", id)
		}
	}
	return p
}

// samCheckMakeTargets: every function built with BuildMethod makefile has a
// build-<LogicalId> target that `make -n` accepts and that builds a linux
// bootstrap for the function's architecture into ARTIFACTS_DIR.
func samCheckMakeTargets(t *cfnTemplate) []string {
	var p samProblems
	artifacts := filepath.Join(os.TempDir(), "idgen-sam-dry-run")
	for _, id := range t.cfnResourcesOfType("AWS::Serverless::Function") {
		r := t.Resources[id]
		if v, _ := cfnScalar(cfnPath(r, "Metadata", "BuildMethod")); v != "makefile" {
			continue
		}
		out, err := exec.Command("make", "-n", "-C", "..", "build-"+id, "ARTIFACTS_DIR="+artifacts).CombinedOutput()
		if err != nil {
			p.add("%s: make -n build-%s: %v\n%s", id, id, err, out)
			continue
		}
		arch := ""
		if a := cfnPath(r, "Properties", "Architectures"); a != nil && len(a.Content) == 1 {
			arch = samGoArch[a.Content[0].Value]
		}
		if arch == "" {
			p.add("%s: Architectures is not one of arm64, x86_64", id)
			continue
		}
		for _, want := range []string{"GOOS=linux", "GOARCH=" + arch, "-o " + artifacts + "/bootstrap", "lambda.norpc", "./cmd/idgen"} {
			if !strings.Contains(string(out), want) {
				p.add("%s: make -n build-%s does not show %q:\n%s", id, id, want, out)
			}
		}
	}
	return p
}

var samPathSegment = regexp.MustCompile(`^([a-z0-9._-]+|\{[A-Za-z_][A-Za-z0-9_]*\})$`)

// samCheckRoutes: the HttpApi events of the generate function are exactly
// the contract's routes (and the erasure route), in API Gateway path
// syntax, plus one $default route; all on one HttpApi served on $default.
func samCheckRoutes(t *cfnTemplate) []string {
	var p samProblems
	var got []string
	defaults := 0
	genID, _ := samFunctionByHandler(t, "generate")
	for _, id := range t.cfnResourcesOfType("AWS::Serverless::Function") {
		events := cfnPath(t.Resources[id], "Properties", "Events")
		if events == nil {
			continue
		}
		for i := 0; i+1 < len(events.Content); i += 2 {
			name, ev := events.Content[i].Value, cfnDeref(events.Content[i+1])
			if typ, _ := cfnScalar(cfnGet(ev, "Type")); typ != "HttpApi" {
				continue
			}
			if id != genID {
				p.add("%s.%s: HTTP routes belong to the generate function", id, name)
			}
			props := cfnGet(ev, "Properties")
			api, ok := cfnRef(cfnGet(props, "ApiId"))
			if !ok || cfnType(t.Resources[api]) != "AWS::Serverless::HttpApi" {
				p.add("%s.%s: ApiId must Ref an AWS::Serverless::HttpApi of this template", id, name)
			} else if st, ok := cfnScalar(cfnPath(t.Resources[api], "Properties", "StageName")); ok && st != "$default" {
				p.add("%s: StageName %q: the adapter routes rawPath, which a named stage prefixes", api, st)
			}
			method, hasM := cfnScalar(cfnGet(props, "Method"))
			path, hasP := cfnScalar(cfnGet(props, "Path"))
			switch {
			case !hasM && !hasP:
				defaults++
				continue
			case !hasM || !hasP:
				p.add("%s.%s: Method and Path go together", id, name)
				continue
			}
			for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
				if !strings.HasPrefix(path, "/") || !samPathSegment.MatchString(seg) {
					p.add("%s.%s: path %q is not API Gateway route syntax (/literal/{param})", id, name, path)
					break
				}
			}
			got = append(got, strings.ToUpper(method)+" "+path)
		}
	}
	want, err := samContractRoutes()
	if err != nil {
		p.add("%v", err)
	}
	sort.Strings(want)
	sort.Strings(got)
	gotSet, wantSet := map[string]int{}, map[string]bool{}
	for _, r := range got {
		gotSet[r]++
	}
	for _, r := range want {
		wantSet[r] = true
		if gotSet[r] == 0 {
			p.add("route %q of the contract has no HttpApi event", r)
		}
	}
	for r, n := range gotSet {
		if !wantSet[r] {
			p.add("route %q is not in the contract", r)
		}
		if n > 1 {
			p.add("route %q defined %d times", r, n)
		}
	}
	if defaults != 1 {
		p.add("%d $default routes (HttpApi events without Method and Path), want 1", defaults)
	}
	return p
}

// samFlag is one flag of an idgen command, by environment variable.
type samFlag struct {
	Name string
	Bool bool
}

var (
	samFlagsOnce sync.Once
	samFlagsVal  map[string]map[string]samFlag
	samFlagsErr  error
)

var samFlagLine = regexp.MustCompile(`^  -([a-z0-9-]+)(?: (\S+))?$`)

// samIdgenFlags returns the flags of `idgen serve` and `idgen compensate` by
// environment variable, read from their -h output (go run in the
// repository root, once per test binary).
func samIdgenFlags() (map[string]map[string]samFlag, error) {
	samFlagsOnce.Do(func() {
		samFlagsVal = map[string]map[string]samFlag{}
		for _, cmd := range []string{"serve", "compensate"} {
			c := exec.Command("go", "run", "./cmd/idgen", cmd, "-h")
			c.Dir = ".."
			out, _ := c.CombinedOutput() // -h exits non-zero
			flags := map[string]samFlag{}
			for _, line := range strings.Split(string(out), "\n") {
				if m := samFlagLine.FindStringSubmatch(line); m != nil {
					env := "IDGEN_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))
					flags[env] = samFlag{Name: m[1], Bool: m[2] == ""}
				}
			}
			if len(flags) < 5 || !strings.Contains(string(out), "[$IDGEN_") {
				samFlagsErr = fmt.Errorf("idgen %s -h printed no flags:\n%s", cmd, out)
				return
			}
			samFlagsVal[cmd] = flags
		}
	})
	return samFlagsVal, samFlagsErr
}

// samEnvRequired are the variables each handler cannot start without, and
// which therefore must not depend on a condition.
var samEnvRequired = map[string][]string{
	"generate":   {"IDGEN_ZOOKEEPER", "IDGEN_REDIS_ADDR", "IDGEN_METADATA_KEY_FILE", "IDGEN_JWT_PUBLIC_KEY", "IDGEN_DATA_DIR"},
	"compensate": {"IDGEN_REDIS_ADDR"},
}

var samSecretName = regexp.MustCompile(`PASSWORD|SECRET|TOKEN`)

// samCheckEnvironment: every IDGEN_* variable is one the command reads (a
// flag's variable, or IDGEN_REDIS_PASSWORD), bool values parse, required
// variables are set unconditionally, Sentinel mode is optional through a
// condition, secrets come only from Secrets Manager dynamic references, the
// data directory is writable (/tmp) and the request timeout is below the
// function's Timeout.
func samCheckEnvironment(t *cfnTemplate, flags map[string]map[string]samFlag) []string {
	var p samProblems
	for id, handler := range samFunctions {
		r := t.Resources[id]
		if r == nil {
			p.add("no %s", id)
			continue
		}
		cmdFlags := flags[samHandlerCommand[handler]]
		vars := cfnPath(r, "Properties", "Environment", "Variables")
		if vars == nil || vars.Kind != yaml.MappingNode {
			p.add("%s: no Environment.Variables", id)
			continue
		}
		set := map[string]*yaml.Node{}
		for i := 0; i+1 < len(vars.Content); i += 2 {
			name, val := vars.Content[i].Value, cfnDeref(vars.Content[i+1])
			set[name] = val
			f, known := cmdFlags[name]
			if !known && name != "IDGEN_REDIS_PASSWORD" {
				p.add("%s: %s is not a variable of idgen %s", id, name, samHandlerCommand[handler])
			}
			for _, b := range cfnBranches(val) {
				lit, isLit := cfnScalar(b)
				if f.Bool {
					v, ok := t.cfnValue(b)
					if _, err := strconv.ParseBool(v); !ok || err != nil {
						p.add("%s: %s=%q is not a bool", id, name, v)
					}
				}
				if name == "IDGEN_DEV" {
					if v, _ := t.cfnValue(b); v != "false" {
						p.add("%s: IDGEN_DEV turns authentication off", id)
					}
				}
				if samSecretName.MatchString(name) && !strings.HasSuffix(name, "_FILE") {
					s := lit
					if sub, ok := cfnIs(b, "Fn::Sub"); ok && sub.Kind == yaml.ScalarNode {
						s, isLit = sub.Value, true
					}
					if !isLit || !strings.HasPrefix(s, "{{resolve:secretsmanager:") {
						p.add("%s: %s must come from a Secrets Manager dynamic reference, not a literal or plain parameter", id, name)
					}
				}
			}
		}
		for _, name := range samEnvRequired[handler] {
			switch val, ok := set[name]; {
			case !ok:
				p.add("%s: %s is required", id, name)
			case len(cfnBranches(val)) != 1 || samIsIf(val):
				p.add("%s: %s is required, it must not depend on a condition", id, name)
			}
		}
		if val, ok := set["IDGEN_REDIS_MASTER"]; !ok {
			p.add("%s: IDGEN_REDIS_MASTER missing (Sentinel mode)", id)
		} else if _, isIf := cfnIs(val, "Fn::If"); !isIf || len(cfnBranches(val)) != 1 {
			p.add("%s: IDGEN_REDIS_MASTER must be optional: !If [Condition, master, !Ref AWS::NoValue]", id)
		}
		if val, ok := set["IDGEN_DATA_DIR"]; ok {
			if v, _ := t.cfnValue(val); !strings.HasPrefix(v, "/tmp/") && v != "/tmp" {
				p.add("%s: IDGEN_DATA_DIR %q is not writable in Lambda (only /tmp is)", id, v)
			}
		}
		if val, ok := set["IDGEN_REQUEST_TIMEOUT"]; ok {
			v, _ := t.cfnValue(val)
			d, err := time.ParseDuration(v)
			timeout, okT := t.cfnInt(cfnPath(r, "Properties", "Timeout"))
			switch {
			case err != nil:
				p.add("%s: IDGEN_REQUEST_TIMEOUT %q: %v", id, v, err)
			case !okT || d >= time.Duration(timeout)*time.Second:
				p.add("%s: IDGEN_REQUEST_TIMEOUT %s must stay below the function Timeout (%ds): the service answers 503 itself before Lambda cuts the invocation", id, d, timeout)
			}
		}
	}
	return p
}

func samIsIf(n *yaml.Node) bool { _, ok := cfnIs(n, "Fn::If"); return ok }

// samCheckRuntimeSettings: both functions in the VPC from parameters, with a
// log group that has a retention; generate with a bounded reserved
// concurrency (ZooKeeper worker slots, sessions), compensate bounded by the
// queue mapping's MaximumConcurrency.
func samCheckRuntimeSettings(t *cfnTemplate) []string {
	var p samProblems
	for _, id := range t.cfnResourcesOfType("AWS::Serverless::Function") {
		props := cfnGet(t.Resources[id], "Properties")
		for key, typ := range map[string]string{"SubnetIds": "List<AWS::EC2::Subnet::Id>", "SecurityGroupIds": "List<AWS::EC2::SecurityGroup::Id>"} {
			_, param, ok := t.cfnParam(cfnPath(props, "VpcConfig", key))
			if pt, _ := cfnScalar(cfnGet(param, "Type")); !ok || pt != typ {
				p.add("%s: VpcConfig.%s must Ref a parameter of type %s", id, key, typ)
			}
		}
		lg, ok := cfnRef(cfnPath(props, "LoggingConfig", "LogGroup"))
		if !ok || cfnType(t.Resources[lg]) != "AWS::Logs::LogGroup" {
			p.add("%s: LoggingConfig.LogGroup must Ref a log group of this template", id)
		} else if cfnPath(t.Resources[lg], "Properties", "RetentionInDays") == nil {
			p.add("%s: log group %s has no RetentionInDays", id, lg)
		}
	}
	if id, r := samFunctionByHandler(t, "generate"); r != nil {
		rc := cfnPath(r, "Properties", "ReservedConcurrentExecutions")
		if max, ok := t.cfnMax(rc); !ok || max > 4096 || max < 1 {
			p.add("%s: ReservedConcurrentExecutions must be bounded by 4096 worker slots (a literal, or a parameter with MaxValue)", id)
		}
		if pc := cfnPath(r, "Properties", "ProvisionedConcurrencyConfig"); pc != nil && cfnPath(r, "Properties", "AutoPublishAlias") == nil {
			p.add("%s: ProvisionedConcurrencyConfig needs AutoPublishAlias", id)
		}
	}
	if id, r := samFunctionByHandler(t, "compensate"); r != nil {
		bounded := cfnPath(r, "Properties", "ReservedConcurrentExecutions") != nil
		for _, ev := range samEventsOfType(r, "SQS") {
			if cfnPath(ev, "Properties", "ScalingConfig", "MaximumConcurrency") != nil {
				bounded = true
			}
		}
		if !bounded {
			p.add("%s: concurrency unbounded (set the SQS event's ScalingConfig.MaximumConcurrency)", id)
		}
	}
	return p
}

// samEventsOfType returns a function's events of one type.
func samEventsOfType(fn *yaml.Node, typ string) []*yaml.Node {
	var out []*yaml.Node
	events := cfnPath(fn, "Properties", "Events")
	if events == nil {
		return nil
	}
	for i := 0; i+1 < len(events.Content); i += 2 {
		ev := cfnDeref(events.Content[i+1])
		if v, _ := cfnScalar(cfnGet(ev, "Type")); v == typ {
			out = append(out, ev)
		}
	}
	return out
}

// samFailureQueues returns the logical IDs of the compensate function's SQS
// queue and of the dead-letter queue of its redrive policy ("" if missing).
func samFailureQueues(t *cfnTemplate) (queue, dlq string) {
	_, fn := samFunctionByHandler(t, "compensate")
	evs := samEventsOfType(fn, "SQS")
	if len(evs) != 1 {
		return "", ""
	}
	q, attr, ok := cfnGetAtt(cfnPath(evs[0], "Properties", "Queue"))
	if !ok || attr != "Arn" || cfnType(t.Resources[q]) != "AWS::SQS::Queue" {
		return "", ""
	}
	d, attr, ok := cfnGetAtt(cfnPath(t.Resources[q], "Properties", "RedrivePolicy", "deadLetterTargetArn"))
	if !ok || attr != "Arn" || d == q || cfnType(t.Resources[d]) != "AWS::SQS::Queue" {
		return q, ""
	}
	return q, d
}

// samCheckFailureQueue: the compensate function reads one queue with
// partial batch responses, batch size and window from parameters; the
// queue redrives to a DLQ after maxReceiveCount; its visibility covers 6x
// the function's timeout plus the largest batching window; the DLQ keeps
// messages longer than the queue.
func samCheckFailureQueue(t *cfnTemplate) []string {
	var p samProblems
	id, fn := samFunctionByHandler(t, "compensate")
	if fn == nil {
		return []string{"no compensate function"}
	}
	evs := samEventsOfType(fn, "SQS")
	if len(evs) != 1 {
		return []string{fmt.Sprintf("%s: %d SQS events, want 1", id, len(evs))}
	}
	props := cfnGet(evs[0], "Properties")
	hasPartial := false
	if frt := cfnGet(props, "FunctionResponseTypes"); frt != nil && frt.Kind == yaml.SequenceNode {
		for _, c := range frt.Content {
			hasPartial = hasPartial || c.Value == "ReportBatchItemFailures"
		}
	}
	if !hasPartial {
		p.add("%s: SQS event without FunctionResponseTypes [ReportBatchItemFailures]: one bad record would fail the batch", id)
	}
	for _, key := range []string{"BatchSize", "MaximumBatchingWindowInSeconds"} {
		if _, _, ok := t.cfnParam(cfnGet(props, key)); !ok {
			p.add("%s: SQS event %s must Ref a parameter", id, key)
		}
	}
	queue, dlq := samFailureQueues(t)
	switch {
	case queue == "":
		p.add("%s: SQS event Queue must be !GetAtt <queue of this template>.Arn", id)
		return p
	case dlq == "":
		p.add("%s: no RedrivePolicy with deadLetterTargetArn !GetAtt <another queue>.Arn", queue)
		return p
	}
	qp, dp := cfnGet(t.Resources[queue], "Properties"), cfnGet(t.Resources[dlq], "Properties")
	mrc := cfnPath(qp, "RedrivePolicy", "maxReceiveCount")
	if n, ok := t.cfnInt(mrc); !ok || n < 1 {
		p.add("%s: RedrivePolicy.maxReceiveCount must be at least 1", queue)
	}
	if _, param, ok := t.cfnParam(mrc); ok {
		if v, _ := cfnScalar(cfnGet(param, "MinValue")); v == "" || v == "0" {
			p.add("%s: maxReceiveCount's parameter needs MinValue 1", queue)
		}
	}
	timeout, _ := t.cfnInt(cfnGet(cfnGet(fn, "Properties"), "Timeout"))
	window, okW := t.cfnMax(cfnGet(props, "MaximumBatchingWindowInSeconds"))
	vis, okV := t.cfnInt(cfnGet(qp, "VisibilityTimeout"))
	if !okW {
		p.add("%s: the batching window must be bounded (MaxValue) to size the visibility timeout", id)
	}
	if !okV || vis < 6*timeout+window {
		p.add("%s: VisibilityTimeout %d < 6 x Timeout (%d) + max batching window (%d)", queue, vis, timeout, window)
	}
	retention := func(props *yaml.Node) int {
		if n, ok := t.cfnInt(cfnGet(props, "MessageRetentionPeriod")); ok {
			return n
		}
		return 345600
	}
	if retention(dp) <= retention(qp) {
		p.add("%s: DLQ retention %d must exceed the queue's %d (SQS keeps the original enqueue time)", dlq, retention(dp), retention(qp))
	}
	return p
}

// samAlarm is an alarm's metric and what it watches.
type samAlarm struct {
	ID, Namespace, Metric string
	Dims                  map[string]*yaml.Node
	Props                 *yaml.Node
}

func samAlarms(t *cfnTemplate) []samAlarm {
	var out []samAlarm
	for _, id := range t.cfnResourcesOfType("AWS::CloudWatch::Alarm") {
		props := cfnGet(t.Resources[id], "Properties")
		a := samAlarm{ID: id, Props: props, Dims: map[string]*yaml.Node{}}
		a.Namespace, _ = cfnScalar(cfnGet(props, "Namespace"))
		a.Metric, _ = cfnScalar(cfnGet(props, "MetricName"))
		if dims := cfnGet(props, "Dimensions"); dims != nil {
			for _, d := range dims.Content {
				if n, ok := cfnScalar(cfnGet(d, "Name")); ok {
					a.Dims[n] = cfnGet(d, "Value")
				}
			}
		}
		out = append(out, a)
	}
	return out
}

// samCheckAlarms: an alarm fires on the first message in the DLQ, each
// function has an Errors and a Throttles alarm, and every alarm notifies the
// (optional) SNS topic.
func samCheckAlarms(t *cfnTemplate) []string {
	var p samProblems
	alarms := samAlarms(t)
	_, dlq := samFailureQueues(t)
	dlqWatched := false
	for _, a := range alarms {
		res, attr, ok := cfnGetAtt(a.Dims["QueueName"])
		if a.Namespace != "AWS/SQS" || a.Metric != "ApproximateNumberOfMessagesVisible" || !ok || res != dlq || attr != "QueueName" {
			continue
		}
		th, _ := t.cfnValue(cfnGet(a.Props, "Threshold"))
		op, _ := cfnScalar(cfnGet(a.Props, "ComparisonOperator"))
		if (th == "0" && op == "GreaterThanThreshold") || (th == "1" && op == "GreaterThanOrEqualToThreshold") {
			dlqWatched = true
		} else {
			p.add("%s: fires on %s %s, want DLQ depth > 0", a.ID, op, th)
		}
	}
	if dlq == "" || !dlqWatched {
		p.add("no alarm on the DLQ's ApproximateNumberOfMessagesVisible > 0")
	}
	for _, fn := range t.cfnResourcesOfType("AWS::Serverless::Function") {
		for _, metric := range []string{"Errors", "Throttles"} {
			found := false
			for _, a := range alarms {
				if name, ok := cfnRef(a.Dims["FunctionName"]); ok && name == fn && a.Namespace == "AWS/Lambda" && a.Metric == metric {
					found = true
				}
			}
			if !found {
				p.add("%s: no %s alarm", fn, metric)
			}
		}
	}
	topics := t.cfnResourcesOfType("AWS::SNS::Topic")
	if len(topics) == 0 {
		p.add("no SNS topic for alarm actions")
	}
	for _, a := range alarms {
		actions := cfnGet(a.Props, "AlarmActions")
		ok := actions != nil
		for _, b := range cfnBranches(actions) {
			if b.Kind != yaml.SequenceNode || len(b.Content) == 0 {
				ok = false
				continue
			}
			for _, c := range b.Content {
				if name, isRef := cfnRef(c); !isRef || cfnType(t.Resources[name]) != "AWS::SNS::Topic" {
					ok = false
				}
			}
		}
		if !ok {
			p.add("%s: AlarmActions must notify the SNS topic", a.ID)
		}
	}
	return p
}

// samCheckEventBridge: an optional (conditional) rule targets the compensate
// function, with a permission under the same condition.
func samCheckEventBridge(t *cfnTemplate) []string {
	var p samProblems
	comp, _ := samFunctionByHandler(t, "compensate")
	rules := t.cfnResourcesOfType("AWS::Events::Rule")
	if len(rules) == 0 {
		return []string{"no EventBridge rule for failure events"}
	}
	for _, rule := range rules {
		r := t.Resources[rule]
		cond, hasCond := cfnScalar(cfnGet(r, "Condition"))
		if !hasCond {
			p.add("%s: the rule must be optional (Condition on a parameter)", rule)
		}
		targets := cfnPath(r, "Properties", "Targets")
		hit := false
		if targets != nil {
			for _, tg := range targets.Content {
				if res, attr, ok := cfnGetAtt(cfnGet(tg, "Arn")); ok && res == comp && attr == "Arn" {
					hit = true
				}
			}
		}
		if !hit {
			p.add("%s: no target !GetAtt %s.Arn", rule, comp)
		}
		permitted := false
		for _, id := range t.cfnResourcesOfType("AWS::Lambda::Permission") {
			pr := t.Resources[id]
			pp := cfnGet(pr, "Properties")
			pc, _ := cfnScalar(cfnGet(pr, "Condition"))
			principal, _ := cfnScalar(cfnGet(pp, "Principal"))
			src, _, _ := cfnGetAtt(cfnGet(pp, "SourceArn"))
			fnRes, _, isAtt := cfnGetAtt(cfnGet(pp, "FunctionName"))
			if !isAtt {
				fnRes, _ = cfnRef(cfnGet(pp, "FunctionName"))
			}
			if principal == "events.amazonaws.com" && src == rule && fnRes == comp {
				permitted = true
				if pc != cond {
					p.add("%s: Condition %q, want the rule's %q", id, pc, cond)
				}
			}
		}
		if !permitted {
			p.add("%s: no lambda:InvokeFunction permission for events.amazonaws.com from this rule", rule)
		}
	}
	return p
}

// samCheckOutputs: the API URL and the queues' URLs and ARNs are outputs.
func samCheckOutputs(t *cfnTemplate) []string {
	var p samProblems
	apis := t.cfnResourcesOfType("AWS::Serverless::HttpApi")
	queue, dlq := samFailureQueues(t)
	want := map[string]bool{}
	for _, q := range []string{queue, dlq} {
		if q != "" {
			want["Ref "+q] = false
			want["GetAtt "+q+".Arn"] = false
		}
	}
	apiURL := false
	for _, o := range t.Outputs {
		v := cfnGet(o, "Value")
		if name, ok := cfnRef(v); ok {
			if _, w := want["Ref "+name]; w {
				want["Ref "+name] = true
			}
		}
		if res, attr, ok := cfnGetAtt(v); ok {
			if _, w := want["GetAtt "+res+"."+attr]; w {
				want["GetAtt "+res+"."+attr] = true
			}
		}
		if sub, ok := cfnIs(v, "Fn::Sub"); ok && sub.Kind == yaml.ScalarNode && len(apis) == 1 &&
			strings.Contains(sub.Value, "${"+apis[0]+"}") && strings.Contains(sub.Value, "execute-api") {
			apiURL = true
		}
	}
	if !apiURL {
		p.add("no output with the API URL (!Sub https://${<HttpApi>}.execute-api...)")
	}
	if queue == "" || dlq == "" {
		p.add("queues not found")
	}
	for k, seen := range want {
		if !seen {
			p.add("no output %s", k)
		}
	}
	sort.Strings(p)
	return p
}
