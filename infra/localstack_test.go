package infra

// Tests of ../localstack: every script passes `bash -n` and shellcheck, and
// the ready hooks, run twice against a recording stand-in for awslocal,
// create the queues, functions and mappings the first time and update them
// the second (idempotent), with the settings template.yaml has.

import (
	"archive/zip"
	"bufio"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const lstackDir = "../localstack"

// lstackScripts lists every *.sh under ../localstack.
func lstackScripts(t *testing.T) []string {
	t.Helper()
	var scripts []string
	err := filepath.WalkDir(lstackDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".volume" {
			return filepath.SkipDir // LocalStack's own state
		}
		if !d.IsDir() && strings.HasSuffix(path, ".sh") {
			scripts = append(scripts, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) < 3 {
		t.Fatalf("found %d scripts under %s, want the ready hooks and smoke.sh", len(scripts), lstackDir)
	}
	return scripts
}

// lstackShellcheck finds shellcheck; its absence fails the test (it is
// installed by scripts/install-deps.sh, which `make test` runs).
func lstackShellcheck(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("shellcheck"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/shellcheck"); err == nil {
		return "/usr/bin/shellcheck"
	}
	t.Fatal("shellcheck is not installed: run scripts/install-deps.sh (Debian package shellcheck)")
	return ""
}

// lstackLint returns what bash -n and shellcheck say about one script.
func lstackLint(shellcheck, script string) []string {
	var problems []string
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		problems = append(problems, "bash -n: "+err.Error()+"\n"+string(out))
	}
	cmd := exec.Command(shellcheck, "--shell=bash", "--external-sources", filepath.Base(script))
	cmd.Dir = filepath.Dir(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		problems = append(problems, "shellcheck: "+err.Error()+"\n"+string(out))
	}
	return problems
}

func TestLocalStackScriptsLint(t *testing.T) {
	t.Parallel()
	shellcheck := lstackShellcheck(t)
	for _, script := range lstackScripts(t) {
		t.Run(strings.TrimPrefix(script, lstackDir+"/"), func(t *testing.T) {
			for _, p := range lstackLint(shellcheck, script) {
				t.Error(p)
			}
			src, err := os.ReadFile(script)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(src), "#!/usr/bin/env bash\n") && !strings.HasPrefix(string(src), "#!/bin/bash\n") {
				t.Error("the first line must be a bash shebang")
			}
			if !strings.Contains(string(src), "\nset -euo pipefail\n") {
				t.Error("no `set -euo pipefail` line")
			}
			if !strings.Contains(string(src), "\nshopt -s inherit_errexit") {
				t.Error("no `shopt -s inherit_errexit`: without it a failing command inside $(...) goes unnoticed")
			}
			if st, err := os.Stat(script); err != nil || st.Mode().Perm()&0o111 == 0 {
				t.Errorf("not executable (LocalStack runs the hooks directly): %v", st.Mode())
			}
		})
	}
}

// TestLocalStackLintCatchesBreakage makes sure both linters really run and
// fail: a syntax error for bash -n, an unquoted expansion for shellcheck.
func TestLocalStackLintCatchesBreakage(t *testing.T) {
	t.Parallel()
	shellcheck := lstackShellcheck(t)
	dir := t.TempDir()
	for name, src := range map[string]string{
		"syntax.sh":   "#!/usr/bin/env bash\nset -euo pipefail\nif true; then\n  echo unterminated\n",
		"unquoted.sh": "#!/usr/bin/env bash\nset -euo pipefail\ndir=$1\nrm -rf $dir/*\n",
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(src), 0o755); err != nil {
			t.Fatal(err)
		}
		if len(lstackLint(shellcheck, path)) == 0 {
			t.Errorf("%s: bash -n and shellcheck found nothing wrong", name)
		}
	}
}

// lstackFakeAWS stands in for awslocal: it records every call, keeps just
// enough state to answer the hooks' look-ups, refuses to create what exists
// (as AWS does), and saves what the tests inspect (packages, environments,
// queue attributes, the rule's pattern) under $FAKE_AWS_STATE.
const lstackFakeAWS = `#!/usr/bin/env bash
set -euo pipefail
state=$FAKE_AWS_STATE
printf '%s\n' "$*" >>"$state/calls.log"
arg() {
	local want=$1
	shift
	while [ $# -gt 1 ]; do
		if [ "$1" = "$want" ]; then
			[ -n "$2" ] || { echo "fake awslocal: empty $want" >&2; exit 3; }
			printf '%s\n' "$2"
			return 0
		fi
		shift
	done
	return 1
}
save_args() { printf '%s\n' "${@:2}" >"$state/$1"; }
# save_zip FILE ARGS...: keeps the package that --zip-file fileb://PATH names.
save_zip() { cp "$(arg --zip-file "${@:2}" | sed 's|^fileb://||')" "$state/$1"; }
# refuse [MESSAGE]: AWS's failure, exit status 254.
refuse() {
	[ $# -eq 0 ] || echo "$1" >&2
	exit 254
}
# found NAME [MESSAGE]: resource NAME exists, else the call fails.
found() { [ -e "$state/$1" ] || refuse "${@:2}"; }
# create NAME [MESSAGE]: makes resource NAME; the call fails if it exists.
create() {
	[ ! -e "$state/$1" ] || refuse "${@:2}"
	touch "$state/$1"
}
acct=000000000000
region=us-east-1
svc=$1 op=$2
shift 2
case "$svc $op" in
"sqs get-queue-url" | "sqs create-queue")
	n=$(arg --queue-name "$@")
	if [ "$op" = create-queue ]; then create "queue-$n" "queue $n exists"; else found "queue-$n" "NonExistentQueue $n"; fi
	echo "http://localhost:4566/$acct/$n" ;;
"sqs get-queue-attributes")
	u=$(arg --queue-url "$@")
	echo "arn:aws:sqs:$region:$acct:${u##*/}" ;;
"sqs set-queue-attributes")
	u=$(arg --queue-url "$@")
	arg --attributes "$@" >>"$state/attributes-${u##*/}" ;;
"iam get-role" | "iam create-role")
	if [ "$op" = create-role ]; then create role; else found role; fi
	echo "arn:aws:iam::$acct:role/idgen-lambda" ;;
"lambda get-function")
	n=$(arg --function-name "$@")
	found "fn-$n" "ResourceNotFoundException $n"
	echo "arn:aws:lambda:$region:$acct:function:$n" ;;
"lambda create-function")
	n=$(arg --function-name "$@")
	create "fn-$n" "ResourceConflictException $n"
	save_args "create-$n.args" "$@"
	save_zip "$n.zip" "$@"
	arg --environment "$@" >"$state/$n.env.json" ;;
"lambda update-function-code")
	n=$(arg --function-name "$@")
	found "fn-$n"
	save_args "code-$n.args" "$@"
	save_zip "$n.zip" "$@" ;;
"lambda update-function-configuration")
	n=$(arg --function-name "$@")
	found "fn-$n"
	save_args "config-$n.args" "$@"
	arg --environment "$@" >"$state/$n.env.json" ;;
"lambda wait") ;;
"lambda list-event-source-mappings")
	if [ -e "$state/esm" ]; then echo 4f6e1c2a-uuid; else echo None; fi ;;
"lambda create-event-source-mapping")
	create esm
	save_args esm.args "$@" ;;
"lambda update-event-source-mapping")
	found esm
	save_args esm-update.args "$@" ;;
"lambda get-policy")
	found permission
	echo '{"Statement":[{"Sid":"idgen-events"}]}' ;;
"lambda add-permission")
	create permission ResourceConflictException
	save_args permission.args "$@" ;;
"events put-rule")
	arg --event-pattern "$@" >"$state/rule-pattern.json"
	echo "arn:aws:events:$region:$acct:rule/$(arg --name "$@")" ;;
"events put-targets")
	save_args targets.args "$@" ;;
"events describe-event-bus" | "events create-event-bus") ;;
*)
	echo "fake awslocal: unexpected call: $svc $op $*" >&2
	exit 2 ;;
esac
`

// lstackELF writes a stand-in bootstrap: an ELF header of machine m.
func lstackELF(t *testing.T, path string, m byte) {
	t.Helper()
	hdr := make([]byte, 64)
	copy(hdr, "\x7fELF\x02\x01\x01")
	hdr[18] = m
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lstackArgs reads a saved argument list into flag → value.
func lstackArgs(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("%v (the call was not made)", err)
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	out := map[string]string{}
	for i := 0; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "--") {
			if i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "--") {
				out[lines[i]] = lines[i+1]
				i++
			} else {
				out[lines[i]] = ""
			}
		}
	}
	return out
}

func TestLocalStackHooks(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatal("python3 is needed by the hooks (LocalStack's image has it) and by this test")
	}
	root := t.TempDir()
	bin, state, lambdaDir, keys := filepath.Join(root, "bin"), filepath.Join(root, "state"), filepath.Join(root, "lambda"), filepath.Join(root, "keys")
	for _, d := range []string{bin, state} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(bin, "awslocal"), []byte(lstackFakeAWS), 0o755); err != nil {
		t.Fatal(err)
	}
	lstackELF(t, filepath.Join(lambdaDir, "generate", "bootstrap"), 0x3e)   // x86_64
	lstackELF(t, filepath.Join(lambdaDir, "compensate", "bootstrap"), 0xb7) // aarch64

	env := append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"FAKE_AWS_STATE="+state, "IDGEN_LAMBDA_DIR="+lambdaDir, "IDGEN_STATE_DIR="+keys,
		"IDGEN_ZOOKEEPER=zk1:2181,zk2:2181", "IDGEN_REDIS_ADDR=redis:6379", "IDGEN_EVENTBRIDGE=true",
		"IDGEN_EVENT_SOURCES=payments, ledger",
	)
	hooks, err := filepath.Glob(filepath.Join(lstackDir, "init", "ready.d", "*.sh"))
	if err != nil || len(hooks) == 0 {
		t.Fatalf("no ready hooks: %v", err)
	}
	run := func(round int) {
		for _, hook := range hooks { // Glob sorts: LocalStack's order
			cmd := exec.Command("bash", hook)
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("round %d: %s: %v\n%s", round, hook, err, out)
			}
		}
	}

	run(1)
	// Queues: the failure queue redrives to the DLQ, visibility as in
	// template.yaml (6 x 30 s + 30 s).
	attrs, err := os.ReadFile(filepath.Join(state, "attributes-idgen-failures"))
	if err != nil {
		t.Fatal(err)
	}
	var qa map[string]string
	if err := json.Unmarshal([]byte(strings.SplitN(string(attrs), "\n", 2)[0]), &qa); err != nil {
		t.Fatalf("queue attributes are not JSON: %v\n%s", err, attrs)
	}
	var redrive map[string]string
	if err := json.Unmarshal([]byte(qa["RedrivePolicy"]), &redrive); err != nil {
		t.Fatalf("RedrivePolicy is not JSON: %v (%q)", err, qa["RedrivePolicy"])
	}
	if !strings.HasSuffix(redrive["deadLetterTargetArn"], ":idgen-failures-dlq") || redrive["maxReceiveCount"] != "5" {
		t.Errorf("RedrivePolicy %v", redrive)
	}
	if qa["VisibilityTimeout"] != "210" {
		t.Errorf("VisibilityTimeout %q, want 210", qa["VisibilityTimeout"])
	}

	// Functions: provided.al2023, handler, architecture from the ELF header,
	// a package with an executable bootstrap.
	for _, fn := range []struct{ name, handler, arch string }{
		{"idgen-generate", "generate", "x86_64"},
		{"idgen-compensate", "compensate", "arm64"},
	} {
		a := lstackArgs(t, filepath.Join(state, "create-"+fn.name+".args"))
		if a["--runtime"] != "provided.al2023" || a["--handler"] != fn.handler || a["--architectures"] != fn.arch {
			t.Errorf("%s created with runtime %q handler %q architectures %q, want provided.al2023 %s %s",
				fn.name, a["--runtime"], a["--handler"], a["--architectures"], fn.handler, fn.arch)
		}
		zr, err := zip.OpenReader(filepath.Join(state, fn.name+".zip"))
		if err != nil {
			t.Fatalf("%s package: %v", fn.name, err)
		}
		files := map[string]fs.FileMode{}
		for _, f := range zr.File {
			files[f.Name] = f.Mode()
		}
		zr.Close()
		if m, ok := files["bootstrap"]; !ok || m.Perm()&0o111 == 0 {
			t.Errorf("%s package: bootstrap missing or not executable (%v)", fn.name, files)
		}
		if _, ok := files["metadata.keys"]; ok != (fn.handler == "generate") {
			t.Errorf("%s package: metadata.keys present=%v", fn.name, ok)
		}
	}
	var genEnv struct{ Variables map[string]string }
	raw, _ := os.ReadFile(filepath.Join(state, "idgen-generate.env.json"))
	if err := json.Unmarshal(raw, &genEnv); err != nil {
		t.Fatalf("generate environment is not JSON: %v\n%s", err, raw)
	}
	for k, want := range map[string]string{
		"IDGEN_ZOOKEEPER": "zk1:2181,zk2:2181", "IDGEN_REDIS_ADDR": "redis:6379", "IDGEN_DEV": "true",
		"IDGEN_METADATA_KEY_FILE": "/var/task/metadata.keys", "IDGEN_DATA_DIR": "/tmp/idgen",
	} {
		if genEnv.Variables[k] != want {
			t.Errorf("generate %s=%q, want %q", k, genEnv.Variables[k], want)
		}
	}
	key, err := os.ReadFile(filepath.Join(keys, "metadata.keys"))
	if f := strings.Fields(string(key)); err != nil || len(f) != 2 || len(f[1]) != 64 {
		t.Errorf("metadata key file %q (%v), want \"<id> <64 hex>\"", key, err)
	}

	// SQS mapping with partial batch responses.
	esm := lstackArgs(t, filepath.Join(state, "esm.args"))
	if esm["--function-name"] != "idgen-compensate" || esm["--function-response-types"] != "ReportBatchItemFailures" ||
		!strings.HasSuffix(esm["--event-source-arn"], ":idgen-failures") {
		t.Errorf("event source mapping %v", esm)
	}

	// EventBridge rule → compensate.
	var pattern map[string][]string
	raw, _ = os.ReadFile(filepath.Join(state, "rule-pattern.json"))
	if err := json.Unmarshal(raw, &pattern); err != nil {
		t.Fatalf("rule pattern is not JSON: %v\n%s", err, raw)
	}
	if strings.Join(pattern["source"], ",") != "payments,ledger" || strings.Join(pattern["detail-type"], ",") != "TransactionFailed" {
		t.Errorf("rule pattern %v", pattern)
	}
	if tg := lstackArgs(t, filepath.Join(state, "targets.args")); !strings.Contains(tg["--targets"], "function:idgen-compensate") {
		t.Errorf("rule targets %v", tg)
	}
	if p := lstackArgs(t, filepath.Join(state, "permission.args")); p["--principal"] != "events.amazonaws.com" {
		t.Errorf("permission %v", p)
	}

	// Round 2: everything exists; the fake refuses a second create, so the
	// hooks must take their update paths, and keep the metadata key.
	run(2)
	for _, f := range []string{"code-idgen-generate.args", "config-idgen-compensate.args", "esm-update.args"} {
		if _, err := os.Stat(filepath.Join(state, f)); err != nil {
			t.Errorf("round 2 did not update: %v", err)
		}
	}
	if key2, _ := os.ReadFile(filepath.Join(keys, "metadata.keys")); string(key2) != string(key) {
		t.Error("round 2 replaced the metadata key: metadata sealed before would become unreadable")
	}
}
