package infra

import (
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The monitoring files are checked with Prometheus's own promtool (config,
// rules, and rule unit tests in monitoring/alerts_test.yml), and every
// metric they name is checked against the metrics the Go sources export.

const monitoringDir = "monitoring"

// promtoolPath finds promtool; the test fails (never skips) without it.
func promtoolPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/bin/promtool"); err != nil {
		t.Fatalf("promtool is missing (Debian package prometheus; scripts/install-deps.sh installs it): %v", err)
	}
	return "/usr/bin/promtool"
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(promtoolPath(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestPromtoolCheckConfig(t *testing.T) {
	t.Parallel()
	// promtool resolves rule_files and credentials_file against the
	// config's directory: check a copy with a dummy token in place.
	dir := t.TempDir()
	copyFile(t, filepath.Join(monitoringDir, "prometheus.yml"), filepath.Join(dir, "prometheus.yml"))
	copyFile(t, filepath.Join(monitoringDir, "alerts.yml"), filepath.Join(dir, "alerts.yml"))
	if err := os.MkdirAll(filepath.Join(dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "idgen-metrics.token"), []byte("dummy\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := runPromtool(t, "check", "config", filepath.Join(dir, "prometheus.yml"))
	// A rule_files glob that matches nothing passes silently: require that
	// alerts.yml was found and its rules loaded.
	if !strings.Contains(out, "SUCCESS: 1 rule files found") || !regexp.MustCompile(`alerts\.yml\s+SUCCESS: [1-9][0-9]* rules found`).MatchString(out) {
		t.Fatalf("alerts.yml not loaded through rule_files:\n%s", out)
	}
}

// TestPromtoolKubernetesVariant un-comments the Kubernetes scrape job of
// prometheus.yml and checks it, so the commented variant stays valid.
func TestPromtoolKubernetesVariant(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join(monitoringDir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(src), "# --- Kubernetes variant")
	if !ok {
		t.Fatal("prometheus.yml has no Kubernetes variant section")
	}
	var job []string
	for _, line := range strings.Split(rest, "\n") {
		if strings.HasPrefix(line, "#  ") { // the commented YAML, indented under scrape_configs
			job = append(job, strings.TrimPrefix(line, "#"))
		}
	}
	if len(job) < 10 || !strings.Contains(job[0], "job_name:") {
		t.Fatalf("could not extract the commented job: %q", job)
	}
	cfg := "scrape_configs:\n" + strings.Join(job, "\n") + "\n"
	// Debian's Prometheus is built without Kubernetes discovery, so promtool
	// checks the job with a static target in place of kubernetes_sd_configs
	// (relabeling, authorization and TLS are checked as written); the
	// discovery block is checked below by decoding.
	var checked []string
	skipping := false
	for _, line := range job {
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		switch {
		case trimmed == "kubernetes_sd_configs:":
			skipping = true
			checked = append(checked, line[:indent]+`static_configs: [{targets: ["10.0.0.1:8080"]}]`)
			continue
		case skipping && indent <= 4:
			skipping = false
		}
		if !skipping {
			checked = append(checked, line)
		}
	}
	path := filepath.Join(t.TempDir(), "k8s.yml")
	if err := os.WriteFile(path, []byte("scrape_configs:\n"+strings.Join(checked, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "check", "config", "--syntax-only", path)
	var parsed struct {
		ScrapeConfigs []struct {
			KubernetesSD   []map[string]any `yaml:"kubernetes_sd_configs"`
			RelabelConfigs []struct {
				Replacement string `yaml:"replacement"`
				TargetLabel string `yaml:"target_label"`
			} `yaml:"relabel_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(cfg), &parsed); err != nil {
		t.Fatal(err)
	}
	jobs := map[string]bool{}
	for _, r := range parsed.ScrapeConfigs[0].RelabelConfigs {
		if r.TargetLabel == "job" {
			jobs[r.Replacement] = true
		}
	}
	if sd := parsed.ScrapeConfigs[0].KubernetesSD; len(sd) != 1 || sd[0]["role"] != "pod" || !jobs["idgen"] || !jobs["compensate"] {
		t.Fatalf("the Kubernetes job must use pod discovery and set job to idgen and compensate: %+v", parsed)
	}
}

// TestMonitoringScrapeConfig checks that the compose jobs discover the
// services by DNS on the ports the rules and docs assume.
func TestMonitoringScrapeConfig(t *testing.T) {
	t.Parallel()
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName string `yaml:"job_name"`
			DNSSD   []struct {
				Names []string `yaml:"names"`
				Type  string   `yaml:"type"`
				Port  int      `yaml:"port"`
			} `yaml:"dns_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(monitoringDir, "prometheus.yml"), &cfg)
	if len(cfg.RuleFiles) != 1 || cfg.RuleFiles[0] != "alerts.yml" {
		t.Errorf("rule_files = %v, want [alerts.yml]", cfg.RuleFiles)
	}
	want := map[string]int{"idgen": 8080, "compensate": 9090}
	for _, sc := range cfg.ScrapeConfigs {
		port, ok := want[sc.JobName]
		if !ok {
			continue
		}
		delete(want, sc.JobName)
		if len(sc.DNSSD) != 1 || len(sc.DNSSD[0].Names) != 1 || sc.DNSSD[0].Names[0] != sc.JobName || sc.DNSSD[0].Port != port || sc.DNSSD[0].Type != "A" {
			t.Errorf("job %s: dns_sd_configs = %+v, want names [%s] type A port %d", sc.JobName, sc.DNSSD, sc.JobName, port)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing scrape jobs %v", want)
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	t.Parallel()
	out := runPromtool(t, "check", "rules", filepath.Join(monitoringDir, "alerts.yml"))
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules:\n%s", out)
	}
}

func TestPromtoolTestRules(t *testing.T) {
	t.Parallel()
	out := runPromtool(t, "test", "rules", filepath.Join(monitoringDir, "alerts_test.yml"))
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// ruleFile is the part of a Prometheus rule file the tests read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestAlertRunbooksAndCoverage: every alert has a severity the routing
// knows, a summary, a description and a runbook section of its own name in
// docs/operations.md; the unit tests fire the alerts the brief requires.
func TestAlertRunbooksAndCoverage(t *testing.T) {
	t.Parallel()
	var rules ruleFile
	readYAML(t, filepath.Join(monitoringDir, "alerts.yml"), &rules)
	doc, err := os.ReadFile(filepath.Join("..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^### (Idgen[A-Za-z]+)\s*$`).FindAllStringSubmatch(string(doc), -1) {
		headings[m[1]] = true
	}
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts[r.Alert] = true
			if s := r.Labels["severity"]; s != "page" && s != "ticket" {
				t.Errorf("%s: severity %q, want page or ticket", r.Alert, s)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			if want := "docs/operations.md#" + strings.ToLower(r.Alert); !strings.HasSuffix(r.Annotations["runbook_url"], want) {
				t.Errorf("%s: runbook_url %q does not end in %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !headings[r.Alert] {
				t.Errorf("%s: docs/operations.md has no \"### %s\" section", r.Alert, r.Alert)
			}
		}
	}
	for h := range headings {
		if !alerts[h] {
			t.Errorf("docs/operations.md documents ### %s, which alerts.yml does not define", h)
		}
	}

	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, filepath.Join(monitoringDir, "alerts_test.yml"), &tests)
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if !alerts[a.Alertname] {
				t.Errorf("alerts_test.yml tests %s, which alerts.yml does not define", a.Alertname)
			}
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, a := range []string{"IdgenRegistryCollision", "IdgenCompensateDLQNotEmpty", "IdgenZooKeeperQuorumLost",
		"IdgenZooKeeperDisconnected", "IdgenGenerateErrorBudgetBurnFast"} {
		if !fires[a] {
			t.Errorf("alerts_test.yml never expects %s to fire", a)
		}
		if !silent[a] {
			t.Errorf("alerts_test.yml never expects %s to stay silent", a)
		}
	}
}

// goMetrics scans the Go sources of the repository (not infra/, not
// tests) for "idgen_..." string literals: the metric names the code
// exports. hist holds those declared through HistogramOpts.
func goMetrics(t *testing.T) (names, hist map[string]bool) {
	t.Helper()
	names, hist = map[string]bool{}, map[string]bool{}
	lit := regexp.MustCompile(`"(idgen_[a-z0-9_]+)"`)
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "infra", "testdata", "vendor", "node_modules", "bin":
				if path != root {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src := string(b)
		for _, m := range lit.FindAllStringSubmatchIndex(src, -1) {
			name := src[m[2]:m[3]]
			names[name] = true
			// The nearest preceding options literal says what it is.
			before := src[:m[0]]
			i := strings.LastIndex(before, "Opts{")
			if i > strings.LastIndex(before, "NewDesc(") && strings.HasSuffix(before[:i], "Histogram") {
				hist[name] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The scan must find the service's known metrics, or it checks nothing.
	for _, n := range []string{"idgen_http_request_duration_seconds", "idgen_registry_flush_seconds", "idgen_registry_batch_size"} {
		if !hist[n] {
			t.Fatalf("scan of the Go sources did not find histogram %s (found %d names)", n, len(names))
		}
	}
	for _, n := range []string{"idgen_zookeeper_connected", "idgen_compensate_dlq_length", "idgen_range_headroom"} {
		if !names[n] {
			t.Fatalf("scan of the Go sources did not find %s", n)
		}
	}
	return names, hist
}

var (
	promString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promIdent  = regexp.MustCompile(`(?:^|[^A-Za-z0-9_:.$])([A-Za-z_][A-Za-z0-9_:]*)`)
)

// exprMetrics returns the metric-like identifiers of a PromQL expression
// outside string literals: names with a colon (recording rules) and names
// starting with idgen_.
func exprMetrics(expr string) []string {
	expr = promString.ReplaceAllString(expr, `""`)
	var out []string
	for _, m := range promIdent.FindAllStringSubmatch(expr, -1) {
		if id := m[1]; strings.Contains(id, ":") || strings.HasPrefix(id, "idgen_") {
			out = append(out, id)
		}
	}
	return out
}

// dashboardExprs returns every PromQL expression of the dashboard
// (targets, template variables, annotations) by where it is.
func dashboardExprs(t *testing.T, dash map[string]any) map[string]string {
	t.Helper()
	out := map[string]string{}
	panels, _ := dash["panels"].([]any)
	for _, p := range panels {
		pm := p.(map[string]any)
		targets, _ := pm["targets"].([]any)
		for _, tg := range targets {
			tm := tg.(map[string]any)
			expr, _ := tm["expr"].(string)
			out[pm["title"].(string)+"/"+tm["refId"].(string)] = expr
		}
	}
	// Template variables and annotations: a list of named entries each,
	// with the expression in a field of its own.
	for _, s := range []struct{ section, field, kind string }{
		{"templating", "definition", "variable"},
		{"annotations", "expr", "annotation"},
	} {
		sec, _ := dash[s.section].(map[string]any)
		list, _ := sec["list"].([]any)
		for _, e := range list {
			em := e.(map[string]any)
			if expr, ok := em[s.field].(string); ok {
				out[s.kind+" "+em["name"].(string)] = expr
			}
		}
	}
	return out
}

func readDashboard(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "grafana", "dashboards", "idgen.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("idgen.json does not parse: %v", err)
	}
	return dash
}

// TestMonitoringMetricNames: every idgen_* metric named in the rules and
// the dashboard is exported by the Go code (histograms with _bucket,
// _count, _sum), and every recording-rule name used is defined.
func TestMonitoringMetricNames(t *testing.T) {
	t.Parallel()
	names, hist := goMetrics(t)
	var rules ruleFile
	readYAML(t, filepath.Join(monitoringDir, "alerts.yml"), &rules)
	exprs := map[string]string{}
	recorded := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				if recorded[r.Record] {
					t.Errorf("recording rule %s defined twice", r.Record)
				}
				recorded[r.Record] = true
				exprs["record "+r.Record] = r.Expr
			} else {
				exprs["alert "+r.Alert] = r.Expr
			}
		}
	}
	for where, e := range dashboardExprs(t, readDashboard(t)) {
		exprs["dashboard "+where] = e
	}
	known := func(id string) bool {
		if names[id] {
			return true
		}
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			if base, ok := strings.CutSuffix(id, suf); ok && hist[base] {
				return true
			}
		}
		return false
	}
	used := map[string]bool{}
	for _, where := range slices.Sorted(maps.Keys(exprs)) {
		for _, id := range exprMetrics(exprs[where]) {
			used[id] = true
			switch {
			case strings.Contains(id, ":"):
				if !recorded[id] {
					t.Errorf("%s uses %s, which no recording rule defines", where, id)
				}
			case !known(id):
				t.Errorf("%s uses %s, which the Go sources do not export", where, id)
			}
		}
	}
	if len(used) < 15 {
		t.Fatalf("only %d metric names found in the expressions: the extraction is broken", len(used))
	}
	for r := range recorded {
		if !used[r] {
			t.Errorf("recording rule %s is used by no alert or panel", r)
		}
	}
}

// TestDashboardPanels: the dashboard parses, every panel names the
// provisioned datasource and has at least one query.
func TestDashboardPanels(t *testing.T) {
	t.Parallel()
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(monitoringDir, "grafana", "provisioning", "datasources", "prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].UID == "" {
		t.Fatalf("datasource provisioning: %+v", ds)
	}
	uid := ds.Datasources[0].UID
	var prov struct {
		Providers []struct {
			Type    string         `yaml:"type"`
			Options map[string]any `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(monitoringDir, "grafana", "provisioning", "dashboards", "idgen.yml"), &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options["path"] == nil {
		t.Fatalf("dashboard provider: %+v", prov)
	}

	dash := readDashboard(t)
	if dash["uid"] == "" || dash["title"] == "" {
		t.Error("dashboard needs a uid and a title")
	}
	checkDS := func(where string, v any) {
		m, ok := v.(map[string]any)
		if !ok || m["uid"] != uid || m["type"] != "prometheus" {
			t.Errorf("%s: datasource %v, want {type: prometheus, uid: %s}", where, v, uid)
		}
	}
	panels, _ := dash["panels"].([]any)
	if len(panels) < 15 {
		t.Fatalf("dashboard has %d panels", len(panels))
	}
	ids := map[float64]bool{}
	titles := map[string]bool{}
	for i, p := range panels {
		pm, ok := p.(map[string]any)
		if !ok {
			t.Fatalf("panel %d is not an object", i)
		}
		title, _ := pm["title"].(string)
		if title == "" {
			t.Errorf("panel %d has no title", i)
		}
		titles[title] = true
		id, _ := pm["id"].(float64)
		if id == 0 || ids[id] {
			t.Errorf("panel %q: id %v missing or repeated", title, pm["id"])
		}
		ids[id] = true
		if _, ok := pm["gridPos"].(map[string]any); !ok {
			t.Errorf("panel %q has no gridPos", title)
		}
		checkDS("panel "+title, pm["datasource"])
		targets, _ := pm["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q has no target", title)
		}
		for _, tg := range targets {
			tm, _ := tg.(map[string]any)
			if e, _ := tm["expr"].(string); strings.TrimSpace(e) == "" {
				t.Errorf("panel %q: target %v has no expr", title, tm["refId"])
			}
			checkDS("panel "+title+" target", tm["datasource"])
		}
	}
	// What the operations brief asks the dashboard to show.
	exprs := strings.Join(func() []string {
		var all []string
		for _, e := range dashboardExprs(t, dash) {
			all = append(all, e)
		}
		return all
	}(), "\n")
	for _, m := range []string{"idgen_http_request_duration_seconds_count", "idgen_http_request_duration_seconds_bucket",
		"idgen:generate_error_ratio:rate5m", "idgen:generate_error_budget_burn:rate1h", "idgen_ids_issued_total",
		"idgen_range_headroom", "idgen_zookeeper_connected", "idgen_range_claims_total", "idgen_zookeeper_cas_conflicts_total",
		"idgen_registry_batch_size_bucket", "idgen_registry_flush_seconds_bucket", "idgen_registry_collisions_total",
		"idgen_compensate_processed_total", "idgen_compensate_dlq_length", "idgen_compensate_lag"} {
		if !strings.Contains(exprs, m) {
			t.Errorf("no panel shows %s", m)
		}
	}
	for _, q := range []string{"0.5", "0.99", "0.999"} {
		if !strings.Contains(exprs, "histogram_quantile("+q+", sum by (le) (rate(idgen_http_request_duration_seconds_bucket") {
			t.Errorf("no latency panel for quantile %s", q)
		}
	}
}
