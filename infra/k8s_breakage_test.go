package infra

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestK8sChecksCatchBreakage breaks the decoded manifests in memory, one
// invariant at a time, and expects the check that defends it to report the
// breakage (and to pass on the manifests as they are). Every check has at
// least one case.
func TestK8sChecksCatchBreakage(t *testing.T) {
	t.Parallel()
	flags := k8sFlagsFor(t)
	cases := []struct {
		check, name string
		want        string
		breakIt     func(t *testing.T, b *k8sBundle)
	}{
		{"namespace", "object in default", `namespace "default"`, func(t *testing.T, b *k8sBundle) {
			k8sDoc1(t, b, "Service", "idgen").Namespace = "default"
		}},
		{"namespace", "no Namespace", "no Namespace idgen", func(t *testing.T, b *k8sBundle) { k8sDrop(t, b, "Namespace", "idgen") }},
		{"kustomization", "image override of nothing", "used by no container", func(t *testing.T, b *k8sBundle) {
			b.Kustomization.Images = append(b.Kustomization.Images, b.Kustomization.Images[0])
			b.Kustomization.Images[len(b.Kustomization.Images)-1].Name = "idgen/unknown"
		}},
		{"kustomization", "manifest dropped from resources", "is not listed", func(t *testing.T, b *k8sBundle) {
			b.Kustomization.Resources = slices.DeleteFunc(b.Kustomization.Resources, func(r string) bool { return r == "idgen-pdb.yaml" })
		}},
		{"replicas", "idgen replicas 2", "at least 3 replicas", func(t *testing.T, b *k8sBundle) {
			*k8sDeploy(t, b, "idgen").Spec.Replicas = 2
		}},
		{"replicas", "compensate replicas 1", "at least 2 replicas", func(t *testing.T, b *k8sBundle) {
			*k8sDeploy(t, b, "idgen-compensate").Spec.Replicas = 1
		}},
		{"replicas", "ZooKeeper of 4", "odd number", func(t *testing.T, b *k8sBundle) {
			*k8sSts(t, b, "zookeeper").Spec.Replicas = 4
		}},
		{"replicas", "selector misses its pods", "does not select its own pod template", func(t *testing.T, b *k8sBundle) {
			k8sDeploy(t, b, "idgen").Spec.Selector.MatchLabels["app.kubernetes.io/component"] = "other"
		}},
		{"probes", "no liveness", "no liveness probe", func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "idgen", "idgen").LivenessProbe = nil
		}},
		{"probes", "readiness not on /health/ready", `readiness probe path "/ready"`, func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "idgen", "idgen").ReadinessProbe.HTTPGet.Path = "/ready"
		}},
		{"probes", "startup on an undeclared port", "startup probe port http is not a port", func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "idgen", "idgen").StartupProbe.HTTPGet.Port = intstr.FromString("http")
		}},
		{"probes", "HTTP probe of a TLS listener", "serves HTTPS", func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "idgen", "idgen").LivenessProbe.HTTPGet.Scheme = corev1.URISchemeHTTP
		}},
		{"probes", "exec probe instead of HTTP for idgen", "must be an HTTP GET", func(t *testing.T, b *k8sBundle) {
			p := k8sCtr(t, b, "idgen-compensate", "compensate").LivenessProbe
			p.HTTPGet, p.Exec = nil, &corev1.ExecAction{Command: []string{"/usr/local/bin/idgen", "healthcheck"}}
		}},
		{"probes", "ZooKeeper without readiness", "container zookeeper: no readiness probe", func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "zookeeper", "zookeeper").ReadinessProbe = nil
		}},
		{"probes", "probe without handler", "has no handler", func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "redis", "redis").LivenessProbe.Exec = nil
		}},
		{"probes", "listen port undeclared", "listens on 9000", func(t *testing.T, b *k8sBundle) {
			k8sSetEnv(k8sCtr(t, b, "idgen", "idgen"), "IDGEN_LISTEN", ":9000")
		}},
		{"security", "pod as root", "pod runAsUser must be 65532", func(t *testing.T, b *k8sBundle) {
			*k8sDeploy(t, b, "idgen").Spec.Template.Spec.SecurityContext.RunAsUser = 0
		}},
		{"security", "runAsNonRoot off", "pod runAsNonRoot must be true", func(t *testing.T, b *k8sBundle) {
			*k8sSts(t, b, "redis").Spec.Template.Spec.SecurityContext.RunAsNonRoot = false
		}},
		{"security", "writable root", "readOnlyRootFilesystem must be true", func(t *testing.T, b *k8sBundle) {
			*k8sCtr(t, b, "redis", "redis").SecurityContext.ReadOnlyRootFilesystem = false
		}},
		{"security", "capabilities kept", "must drop ALL", func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "redis-sentinel", "sentinel").SecurityContext.Capabilities.Drop = nil
		}},
		{"security", "privilege escalation", "allowPrivilegeEscalation must be false", func(t *testing.T, b *k8sBundle) {
			*k8sCtr(t, b, "idgen-compensate", "compensate").SecurityContext.AllowPrivilegeEscalation = true
		}},
		{"security", "no seccomp", "pod seccompProfile must be RuntimeDefault", func(t *testing.T, b *k8sBundle) {
			k8sSts(t, b, "zookeeper").Spec.Template.Spec.SecurityContext.SeccompProfile = nil
		}},
		{"security", "token mounted", "automountServiceAccountToken must be false", func(t *testing.T, b *k8sBundle) {
			*k8sDeploy(t, b, "idgen").Spec.Template.Spec.AutomountServiceAccountToken = true
		}},
		{"security", "ServiceAccount mounts tokens", "ServiceAccount/idgen: automountServiceAccountToken", func(t *testing.T, b *k8sBundle) {
			k8sObj[*corev1.ServiceAccount](t, b, "idgen").AutomountServiceAccountToken = nil
		}},
		{"resources", "no memory limit", "no memory limit", func(t *testing.T, b *k8sBundle) {
			delete(k8sCtr(t, b, "idgen", "idgen").Resources.Limits, corev1.ResourceMemory)
		}},
		{"resources", "request above limit", "above its limit", func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "zookeeper", "zookeeper").Resources.Requests[corev1.ResourceMemory] = resource.MustParse("4Gi")
		}},
		{"services", "selector of several workloads", "want exactly 1", func(t *testing.T, b *k8sBundle) {
			k8sSvc(t, b, "idgen").Spec.Selector = map[string]string{"app.kubernetes.io/part-of": "idgen"}
		}},
		{"services", "undeclared target port", "does not declare", func(t *testing.T, b *k8sBundle) {
			k8sSvc(t, b, "zookeeper").Spec.Ports[0].TargetPort = intstr.FromString("clients")
		}},
		{"services", "API not on port 80", "no Service maps port 80", func(t *testing.T, b *k8sBundle) {
			k8sSvc(t, b, "idgen").Spec.Ports[0].Port = 8443
		}},
		{"services", "LoadBalancer", "want ClusterIP", func(t *testing.T, b *k8sBundle) {
			k8sSvc(t, b, "idgen").Spec.Type = corev1.ServiceTypeLoadBalancer
		}},
		{"statefulsets", "serviceName unknown", "is not a Service defined here", func(t *testing.T, b *k8sBundle) {
			k8sSts(t, b, "zookeeper").Spec.ServiceName = "zk"
		}},
		{"statefulsets", "peers hidden until ready", "must publish not-ready addresses", func(t *testing.T, b *k8sBundle) {
			k8sSvc(t, b, "zookeeper-headless").Spec.PublishNotReadyAddresses = false
		}},
		{"statefulsets", "volumes deleted with the set", "must be retained", func(t *testing.T, b *k8sBundle) {
			k8sSts(t, b, "zookeeper").Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
		}},
		{"hpa", "target unknown", "is not a workload defined here", func(t *testing.T, b *k8sBundle) {
			k8sHPA(t, b, "idgen").Spec.ScaleTargetRef.Name = "idgen-server"
		}},
		{"hpa", "no request-rate metric", "no pods metric", func(t *testing.T, b *k8sBundle) {
			h := k8sHPA(t, b, "idgen")
			h.Spec.Metrics = slices.DeleteFunc(h.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool { return m.Type == autoscalingv2.PodsMetricSourceType })
		}},
		{"hpa", "no memory metric", "no memory metric", func(t *testing.T, b *k8sBundle) {
			h := k8sHPA(t, b, "idgen")
			h.Spec.Metrics = slices.DeleteFunc(h.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool {
				return m.Resource != nil && m.Resource.Name == corev1.ResourceMemory
			})
		}},
		{"hpa", "minReplicas below replicas", "minReplicas 2 below", func(t *testing.T, b *k8sBundle) {
			*k8sHPA(t, b, "idgen").Spec.MinReplicas = 2
		}},
		{"hpa", "undocumented Pods metric", "has no prometheus-adapter rule", func(t *testing.T, b *k8sBundle) {
			for _, m := range k8sHPA(t, b, "idgen").Spec.Metrics {
				if m.Pods != nil {
					m.Pods.Metric.Name = "idgen_rps"
				}
			}
		}},
		{"hpa", "serve without HPA", "no HorizontalPodAutoscaler", func(t *testing.T, b *k8sBundle) {
			k8sDrop(t, b, "HorizontalPodAutoscaler", "idgen")
		}},
		{"pdb", "selector of nothing", "want exactly 1 workload", func(t *testing.T, b *k8sBundle) {
			k8sPDB(t, b, "idgen").Spec.Selector.MatchLabels["app.kubernetes.io/component"] = "api"
		}},
		{"pdb", "ZooKeeper loses its quorum", "no majority left", func(t *testing.T, b *k8sBundle) {
			v := intstr.FromInt32(2)
			k8sPDB(t, b, "zookeeper").Spec.MaxUnavailable = &v
		}},
		{"pdb", "drains blocked", "allows no disruption", func(t *testing.T, b *k8sBundle) {
			v := intstr.FromInt32(0)
			k8sPDB(t, b, "idgen").Spec.MaxUnavailable = &v
		}},
		{"pdb", "workload without PDB", "0 PodDisruptionBudgets", func(t *testing.T, b *k8sBundle) {
			k8sDrop(t, b, "PodDisruptionBudget", "idgen-compensate")
		}},
		{"configmaps", "missing key", `has no key "IDGEN_ZK"`, func(t *testing.T, b *k8sBundle) {
			k8sEnvVar(t, k8sCtr(t, b, "idgen", "idgen"), "IDGEN_ZOOKEEPER").ValueFrom.ConfigMapKeyRef.Key = "IDGEN_ZK"
		}},
		{"configmaps", "missing ConfigMap", `ConfigMap "zk-config" is not defined`, func(t *testing.T, b *k8sBundle) {
			k8sVol(t, &k8sSts(t, b, "zookeeper").Spec.Template.Spec, "config").ConfigMap.Name = "zk-config"
		}},
		{"configmaps", "unused ConfigMap", "used by no workload", func(t *testing.T, b *k8sBundle) {
			b.Docs = append(b.Docs, &k8sDoc{Kind: "ConfigMap", Name: "spare", Obj: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "spare"}}})
		}},
		{"secrets", "another Secret", `Secret "idgen-tls", want idgen-secrets`, func(t *testing.T, b *k8sBundle) {
			k8sVol(t, &k8sDeploy(t, b, "idgen").Spec.Template.Spec, "secrets").Secret.SecretName = "idgen-tls"
		}},
		{"secrets", "undocumented key", `key "redis-pass" of idgen-secrets is not documented`, func(t *testing.T, b *k8sBundle) {
			k8sEnvVar(t, k8sCtr(t, b, "redis", "redis"), "REDISCLI_AUTH").ValueFrom.SecretKeyRef.Key = "redis-pass"
		}},
		{"secrets", "committed Secret", "must not be committed", func(t *testing.T, b *k8sBundle) {
			b.Docs = append(b.Docs, &k8sDoc{Kind: "Secret", Name: "idgen-secrets", Obj: &corev1.Secret{StringData: map[string]string{"redis-password": "x"}}})
		}},
		{"secrets", "literal password", "a literal secret value", func(t *testing.T, b *k8sBundle) {
			k8sSetEnv(k8sCtr(t, b, "idgen-compensate", "compensate"), "IDGEN_REDIS_PASSWORD", "hunter2")
		}},
		{"secrets", "creation undocumented", "does not show how to create", func(t *testing.T, b *k8sBundle) {
			b.README = strings.ReplaceAll(b.README, "kubectl create secret generic idgen-secrets", "kubectl create secret")
		}},
		{"env-flags", "misspelt flag", "IDGEN_DRAIN_DELAYS is not a flag of idgen serve", func(t *testing.T, b *k8sBundle) {
			k8sEnvVar(t, k8sCtr(t, b, "idgen", "idgen"), "IDGEN_DRAIN_DELAY").Name = "IDGEN_DRAIN_DELAYS"
		}},
		{"env-flags", "serve flag given to compensate", "IDGEN_ZOOKEEPER is not a flag of idgen compensate", func(t *testing.T, b *k8sBundle) {
			k8sSetEnv(k8sCtr(t, b, "idgen-compensate", "compensate"), "IDGEN_ZOOKEEPER", "zookeeper:2181")
		}},
		{"env-flags", "stray variable", "FOO is neither", func(t *testing.T, b *k8sBundle) {
			k8sSetEnv(k8sCtr(t, b, "idgen", "idgen"), "FOO", "bar")
		}},
		{"env-flags", "unused helper variable", "POD_IP is neither", func(t *testing.T, b *k8sBundle) {
			k8sSetEnv(k8sCtr(t, b, "idgen", "idgen"), "IDGEN_ADVERTISE_ADDR", "idgen:8080")
		}},
		{"env-flags", "misspelt ConfigMap key", "ConfigMap/idgen-config: IDGEN_SHARDS is not a flag", func(t *testing.T, b *k8sBundle) {
			b.configMap("idgen-config").Data["IDGEN_SHARDS"] = "1"
		}},
		{"paths", "secret file not projected", `holds no file "tls.pem"`, func(t *testing.T, b *k8sBundle) {
			k8sSetEnv(k8sCtr(t, b, "idgen", "idgen"), "IDGEN_TLS_CERT", "/etc/idgen/secrets/tls.pem")
		}},
		{"paths", "script not in the ConfigMap", `holds no file "start-zk.sh"`, func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "zookeeper", "zookeeper").Command[1] = "/etc/idgen/zookeeper/start-zk.sh"
		}},
		{"paths", "probe script not in the ConfigMap", `holds no file "probes.sh"`, func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "redis", "redis").ReadinessProbe.Exec.Command[1] = "/etc/idgen/redis/probes.sh"
		}},
		{"paths", "idgen path in the image", "is under no volume mount", func(t *testing.T, b *k8sBundle) {
			k8sSetEnv(k8sCtr(t, b, "idgen", "idgen"), "IDGEN_DATA_DIR", "/data")
		}},
		{"paths", "mount of no volume", "neither a volume nor a claim template", func(t *testing.T, b *k8sBundle) {
			k8sCtr(t, b, "idgen", "idgen").VolumeMounts[0].Name = "secret"
		}},
		{"paths", "volume never mounted", "volume tmp is mounted by no container", func(t *testing.T, b *k8sBundle) {
			c := k8sCtr(t, b, "idgen-compensate", "compensate")
			c.VolumeMounts = slices.DeleteFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "tmp" })
		}},
		{"termination-grace", "grace period too short", "must exceed drain delay", func(t *testing.T, b *k8sBundle) {
			*k8sDeploy(t, b, "idgen").Spec.Template.Spec.TerminationGracePeriodSeconds = 25
		}},
		{"termination-grace", "drain delay grown", "must exceed drain delay 40s", func(t *testing.T, b *k8sBundle) {
			b.configMap("idgen-config").Data["IDGEN_DRAIN_DELAY"] = "40s"
		}},
		{"termination-grace", "no drain delay", "no drain delay", func(t *testing.T, b *k8sBundle) {
			b.configMap("idgen-config").Data["IDGEN_DRAIN_DELAY"] = "0s"
		}},
		{"termination-grace", "slow readiness", "readiness needs 30s to fail", func(t *testing.T, b *k8sBundle) {
			p := k8sCtr(t, b, "idgen", "idgen").ReadinessProbe
			p.PeriodSeconds, p.FailureThreshold = 10, 3
		}},
		{"scrape", "scrape port undeclared", "prometheus.io/port", func(t *testing.T, b *k8sBundle) {
			k8sDeploy(t, b, "idgen").Spec.Template.Annotations["prometheus.io/port"] = "9999"
		}},
		{"scrape", "scheme of a TLS listener", "prometheus.io/scheme", func(t *testing.T, b *k8sBundle) {
			k8sDeploy(t, b, "idgen").Spec.Template.Annotations["prometheus.io/scheme"] = "http"
		}},
		{"scrape", "not scraped", "prometheus.io/scrape", func(t *testing.T, b *k8sBundle) {
			delete(k8sDeploy(t, b, "idgen-compensate").Spec.Template.Annotations, "prometheus.io/scrape")
		}},
		{"spread", "no zone spread", "over topology.kubernetes.io/zone", func(t *testing.T, b *k8sBundle) {
			s := &k8sDeploy(t, b, "idgen").Spec.Template.Spec
			s.TopologySpreadConstraints = slices.DeleteFunc(s.TopologySpreadConstraints, func(c corev1.TopologySpreadConstraint) bool { return c.TopologyKey == "topology.kubernetes.io/zone" })
		}},
		{"spread", "no node spread", "no topologySpreadConstraint over kubernetes.io/hostname", func(t *testing.T, b *k8sBundle) {
			s := &k8sDeploy(t, b, "idgen").Spec.Template.Spec
			s.TopologySpreadConstraints = slices.DeleteFunc(s.TopologySpreadConstraints, func(c corev1.TopologySpreadConstraint) bool { return c.TopologyKey == "kubernetes.io/hostname" })
		}},
		{"spread", "no anti-affinity", "no podAntiAffinity", func(t *testing.T, b *k8sBundle) {
			k8sSts(t, b, "zookeeper").Spec.Template.Spec.Affinity = nil
		}},
		{"spread", "spread over other pods", "does not select its own pods", func(t *testing.T, b *k8sBundle) {
			k8sDeploy(t, b, "idgen").Spec.Template.Spec.TopologySpreadConstraints[0].LabelSelector.MatchLabels["app.kubernetes.io/name"] = "redis"
		}},
		{"networkpolicy", "ingress on an undeclared port", "ingress port 9090 is not a port", func(t *testing.T, b *k8sBundle) {
			p := intstr.FromInt32(9090)
			np := k8sNP(t, b, "idgen")
			np.Spec.Ingress[0].Ports = append(np.Spec.Ingress[0].Ports, networkingv1.NetworkPolicyPort{Port: &p})
		}},
		{"networkpolicy", "idgen reaches another port", "idgen serve may reach only ports", func(t *testing.T, b *k8sBundle) {
			p := intstr.FromInt32(5432)
			np := k8sNP(t, b, "idgen")
			np.Spec.Egress[0].Ports = append(np.Spec.Egress[0].Ports, networkingv1.NetworkPolicyPort{Port: &p})
		}},
		{"networkpolicy", "egress anywhere", "allows any destination", func(t *testing.T, b *k8sBundle) {
			k8sNP(t, b, "idgen-compensate").Spec.Egress[0].To = nil
		}},
		{"networkpolicy", "leaves the namespace beyond DNS", "only DNS (53) may", func(t *testing.T, b *k8sBundle) {
			np := k8sNP(t, b, "zookeeper")
			p := intstr.FromInt32(443)
			np.Spec.Egress[len(np.Spec.Egress)-1].Ports[0].Port = &p
		}},
		{"networkpolicy", "no default deny", "no default-deny", func(t *testing.T, b *k8sBundle) { k8sDrop(t, b, "NetworkPolicy", "default-deny") }},
		{"networkpolicy", "workload without policy", "StatefulSet/zookeeper: no NetworkPolicy", func(t *testing.T, b *k8sBundle) {
			k8sDrop(t, b, "NetworkPolicy", "zookeeper")
		}},
	}
	byName := map[string]k8sCheck{}
	for _, c := range k8sChecks {
		byName[c.Name] = c
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.check+"/"+tc.name, func(t *testing.T) {
			check, ok := byName[tc.check]
			if !ok {
				t.Fatalf("no check %q", tc.check)
			}
			covered[tc.check] = true
			b, err := k8sLoad(k8sDir)
			if err != nil {
				t.Fatal(err)
			}
			if errs := check.Run(b, flags); len(errs) > 0 {
				t.Fatalf("the check fails before the breakage: %v", errs)
			}
			tc.breakIt(t, b)
			errs := check.Run(b, flags)
			if !k8sAnyContains(errs, tc.want) {
				t.Fatalf("after the breakage the check reported %v, want an error with %q", errs, tc.want)
			}
		})
	}
	for _, c := range k8sChecks {
		if !covered[c.Name] {
			t.Errorf("check %s has no breakage case", c.Name)
		}
	}
}

func k8sDoc1(t *testing.T, b *k8sBundle, kind, name string) *k8sDoc {
	t.Helper()
	for _, d := range b.Docs {
		if d.Kind == kind && d.Name == name {
			return d
		}
	}
	t.Fatalf("no %s/%s", kind, name)
	return nil
}

func k8sDrop(t *testing.T, b *k8sBundle, kind, name string) {
	t.Helper()
	d := k8sDoc1(t, b, kind, name)
	b.Docs = slices.DeleteFunc(b.Docs, func(x *k8sDoc) bool { return x == d })
}

// k8sObj returns the object of type T (*appsv1.Deployment, ...) named name.
func k8sObj[T any](t *testing.T, b *k8sBundle, name string) T {
	t.Helper()
	for _, d := range b.Docs {
		if o, ok := d.Obj.(T); ok && d.Name == name {
			return o
		}
	}
	var none T
	t.Fatalf("no %T named %s", none, name)
	return none
}

// The look-ups of the kinds the breakage cases change most.
var (
	k8sDeploy = k8sObj[*appsv1.Deployment]
	k8sSts    = k8sObj[*appsv1.StatefulSet]
	k8sSvc    = k8sObj[*corev1.Service]
	k8sHPA    = k8sObj[*autoscalingv2.HorizontalPodAutoscaler]
	k8sPDB    = k8sObj[*policyv1.PodDisruptionBudget]
	k8sNP     = k8sObj[*networkingv1.NetworkPolicy]
)

// k8sCtr returns container name of the Deployment or StatefulSet workload.
func k8sCtr(t *testing.T, b *k8sBundle, workload, name string) *corev1.Container {
	t.Helper()
	for _, w := range b.workloads() {
		if w.Name != workload {
			continue
		}
		for i := range w.Template.Spec.Containers {
			if c := &w.Template.Spec.Containers[i]; c.Name == name {
				return c
			}
		}
	}
	t.Fatalf("no container %s in %s", name, workload)
	return nil
}

func k8sVol(t *testing.T, spec *corev1.PodSpec, name string) *corev1.Volume {
	t.Helper()
	i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
	if i < 0 {
		t.Fatalf("no volume %s", name)
	}
	return &spec.Volumes[i]
}

func k8sEnvVar(t *testing.T, c *corev1.Container, name string) *corev1.EnvVar {
	t.Helper()
	i := k8sEnvIndex(c, name)
	if i < 0 {
		t.Fatalf("container %s has no %s", c.Name, name)
	}
	return &c.Env[i]
}

// k8sSetEnv sets a literal variable, replacing one of the same name.
func k8sSetEnv(c *corev1.Container, name, value string) {
	v := corev1.EnvVar{Name: name, Value: value}
	if i := k8sEnvIndex(c, name); i >= 0 {
		c.Env[i] = v
	} else {
		c.Env = append(c.Env, v)
	}
}

// k8sEnvIndex is the index of variable name in c.Env, or -1.
func k8sEnvIndex(c *corev1.Container, name string) int {
	return slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
}
