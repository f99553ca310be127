package infra

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The Kubernetes manifests of infra/k8s: every document is decoded strictly
// into the official API type of its kind (k8s_load_test.go), then checked
// for the invariants the deployment relies on: each pod (k8s_pods_test.go),
// shutdown, scraping and placement (k8s_ops_test.go), references between
// objects (k8s_refs_test.go, k8s_config_test.go, k8s_mounts_test.go,
// k8s_netpol_test.go). The flags come from the idgen binary itself
// (k8s_flags_test.go). TestK8sDecodeRejects and TestK8sChecksCatchBreakage
// break the manifests, one invariant at a time, and expect the matching
// check to fail.

const k8sDir = "k8s"

// k8sCheck is one invariant over the whole bundle; it returns every
// violation it finds.
type k8sCheck struct {
	Name string
	Run  func(*k8sBundle, k8sFlagSets) []error
}

var k8sChecks = []k8sCheck{
	{"namespace", k8sCheckNamespace},
	{"kustomization", k8sCheckKustomization},
	{"replicas", k8sCheckReplicas},
	{"probes", k8sCheckProbes},
	{"security", k8sCheckSecurity},
	{"resources", k8sCheckResources},
	{"services", k8sCheckServices},
	{"statefulsets", k8sCheckStatefulSets},
	{"hpa", k8sCheckHPA},
	{"pdb", k8sCheckPDB},
	{"configmaps", k8sCheckConfigMaps},
	{"secrets", k8sCheckSecrets},
	{"env-flags", k8sCheckEnvFlags},
	{"paths", k8sCheckPaths},
	{"termination-grace", k8sCheckGrace},
	{"scrape", k8sCheckScrape},
	{"spread", k8sCheckSpread},
	{"networkpolicy", k8sCheckNetworkPolicy},
}

var (
	k8sFlagsOnce sync.Once
	k8sFlagsVal  k8sFlagSets
)

// k8sFlagsFor builds idgen once per test binary and returns its flags.
func k8sFlagsFor(t *testing.T) k8sFlagSets {
	t.Helper()
	k8sFlagsOnce.Do(func() { k8sFlagsVal = k8sIdgenFlags(t) })
	if k8sFlagsVal == nil {
		t.Fatal("the idgen flags could not be read (see the first test that tried)")
	}
	return k8sFlagsVal
}

func TestK8sManifests(t *testing.T) {
	t.Parallel()
	b, err := k8sLoad(k8sDir)
	if err != nil {
		t.Fatalf("decoding %s:\n%v", k8sDir, err)
	}
	if len(b.Docs) == 0 {
		t.Fatalf("no manifests under %s", k8sDir)
	}
	flags := k8sFlagsFor(t)
	for _, c := range k8sChecks {
		t.Run(c.Name, func(t *testing.T) {
			for _, err := range c.Run(b, flags) {
				t.Error(err)
			}
		})
	}
}

// TestK8sDecodeRejects edits a copy of the manifests so strict decoding or
// the kustomization check must fail.
func TestK8sDecodeRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		file       string
		old, new   string // replace the first old with new in file ("" old: append new)
		newFile    string // or write new into this extra file
		wantDecode bool   // k8sLoad fails; otherwise the kustomization check does
		want       string // in the error
	}{
		{name: "unknown field", file: "idgen-deployment.yaml", old: "  replicas: 3\n", new: "  replicas: 3\n  replicaz: 3\n", wantDecode: true, want: `unknown field "replicaz"`},
		{name: "misspelt probe field", file: "idgen-deployment.yaml", old: "failureThreshold: 60", new: "failureTreshold: 60", wantDecode: true, want: `unknown field "failureTreshold"`},
		{name: "duplicate key", file: "idgen-service.yaml", old: "  type: ClusterIP\n", new: "  type: ClusterIP\n  type: ClusterIP\n", wantDecode: true, want: `"type" already set`},
		{name: "wrong type", file: "idgen-deployment.yaml", old: "  replicas: 3\n", new: "  replicas: three\n", wantDecode: true, want: "cannot unmarshal string"},
		{name: "unknown kind", newFile: "ingress.yaml", new: "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: idgen\n  namespace: idgen\n", wantDecode: true, want: "unknown apiVersion/kind"},
		{name: "old apiVersion", file: "idgen-hpa.yaml", old: "autoscaling/v2", new: "autoscaling/v1", wantDecode: true, want: `unknown apiVersion/kind "autoscaling/v1"`},
		{name: "unknown kustomization field", file: "kustomization.yaml", old: "namespace: idgen\n", new: "namespace: idgen\ncommonLabelz: {}\n", wantDecode: true, want: `unknown field "commonLabelz"`},
		{name: "manifest not listed", newFile: "extra.yaml", new: "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: extra\n  namespace: idgen\nautomountServiceAccountToken: false\n", want: "extra.yaml is not listed"},
		{name: "listed file missing", file: "kustomization.yaml", old: "  - namespace.yaml\n", new: "  - namespace.yaml\n  - missing.yaml\n", want: "resource missing.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := k8sCopyDir(t)
			if tc.newFile != "" {
				if err := os.WriteFile(filepath.Join(dir, tc.newFile), []byte(tc.new), 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				path := filepath.Join(dir, tc.file)
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(data), tc.old) {
					t.Fatalf("%s no longer contains %q: update the test", tc.file, tc.old)
				}
				if err := os.WriteFile(path, []byte(strings.Replace(string(data), tc.old, tc.new, 1)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := k8sLoad(dir)
			if tc.wantDecode {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("k8sLoad: got %v, want an error with %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("k8sLoad: %v", err)
			}
			if errs := k8sCheckKustomization(b, nil); !k8sAnyContains(errs, tc.want) {
				t.Fatalf("kustomization check: got %v, want an error with %q", errs, tc.want)
			}
		})
	}
}

// k8sCopyDir copies the manifest directory into a temporary one.
func k8sCopyDir(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(k8sDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(k8sDir, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func k8sAnyContains(errs []error, want string) bool {
	for _, err := range errs {
		if strings.Contains(err.Error(), want) {
			return true
		}
	}
	return false
}
