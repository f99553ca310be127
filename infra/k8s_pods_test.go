package infra

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The pod-level checks: what every pod and container of the workloads must
// satisfy on its own.

// k8sUID is the uid of the idgen image (and of every other pod here).
const k8sUID = 65532

// k8sContainer is one container of a workload with what the checks ask of
// it: whether it runs idgen and which subcommand.
type k8sContainer struct {
	W     *k8sWorkload
	C     *corev1.Container
	Init  bool
	Sub   string // idgen subcommand; "" when not idgen
	Idgen bool
}

func (c k8sContainer) String() string { return fmt.Sprintf("%s container %s", c.W, c.C.Name) }

// containers returns every container (init containers too) of every workload.
func (b *k8sBundle) containers() []k8sContainer {
	var out []k8sContainer
	for _, w := range b.workloads() {
		spec := &w.Template.Spec
		for i := range spec.InitContainers {
			c := &spec.InitContainers[i]
			sub, ok := k8sIdgenSub(c.Command, c.Args, c.Image)
			out = append(out, k8sContainer{W: w, C: c, Init: true, Sub: sub, Idgen: ok})
		}
		for i := range spec.Containers {
			c := &spec.Containers[i]
			sub, ok := k8sIdgenSub(c.Command, c.Args, c.Image)
			out = append(out, k8sContainer{W: w, C: c, Sub: sub, Idgen: ok})
		}
	}
	return out
}

// envValue is what variable name gets in container c: a literal, or a key
// of a ConfigMap of the bundle (valueFrom or envFrom). ok is false when the
// variable is unset or comes from elsewhere (a Secret, the downward API).
func (b *k8sBundle) envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		if e.ValueFrom == nil {
			return e.Value, true
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			if cm := b.configMap(r.Name); cm != nil {
				v, ok := cm.Data[r.Key]
				return v, ok
			}
		}
		return "", false
	}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil || !strings.HasPrefix(name, ef.Prefix) {
			continue
		}
		if cm := b.configMap(ef.ConfigMapRef.Name); cm != nil {
			if v, ok := cm.Data[strings.TrimPrefix(name, ef.Prefix)]; ok {
				return v, true
			}
		}
	}
	return "", false
}

// flagValue is the value flag f takes in container c: the command line
// wins over the environment, which wins over the default.
func (b *k8sBundle) flagValue(c *corev1.Container, f k8sFlag) string {
	argv := append(append([]string{}, c.Command...), c.Args...)
	for i, a := range argv {
		for _, p := range []string{"--" + f.Name, "-" + f.Name} {
			if a == p && i+1 < len(argv) {
				return argv[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	if v, ok := b.envValue(c, f.Env); ok {
		return v
	}
	return f.Default
}

// k8sDeclares reports whether container c declares port p (by name or
// number).
func k8sDeclares(c *corev1.Container, p intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return true
		}
	}
	return false
}

// k8sWorkloadPort resolves port p (name or number) against the containers
// of w: the container port number, or 0 when no container declares it.
func k8sWorkloadPort(w *k8sWorkload, p intstr.IntOrString) int32 {
	for i := range w.Template.Spec.Containers {
		for _, cp := range w.Template.Spec.Containers[i].Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return cp.ContainerPort
			}
		}
	}
	return 0
}

// k8sListenPort is the port of a listen address such as ":8080".
func k8sListenPort(addr string) (int32, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(port, 10, 32)
	return int32(n), err
}

// k8sTLS reports whether an idgen serve container serves HTTPS.
func (b *k8sBundle) k8sTLS(c k8sContainer, flags k8sFlagSets) bool {
	f, ok := flags["serve"]["IDGEN_TLS_CERT"]
	return c.Sub == "serve" && ok && b.flagValue(c.C, f) != ""
}

// k8sCheckReplicas: idgen serve runs at least 3 replicas in a Deployment,
// the compensate worker at least 2, a ZooKeeper ensemble an odd number >= 3,
// and every workload's selector selects its own pod template.
func k8sCheckReplicas(b *k8sBundle, _ k8sFlagSets) []error {
	var errs []error
	subs := map[string]int{}
	for _, c := range b.containers() {
		if !c.Idgen {
			continue
		}
		subs[c.Sub]++
		switch c.Sub {
		case "serve":
			if c.W.Kind != "Deployment" || c.W.Replicas < 3 {
				errs = append(errs, fmt.Errorf("%s: idgen serve needs a Deployment of at least 3 replicas, has %s of %d", c, c.W.Kind, c.W.Replicas))
			}
		case "compensate":
			if c.W.Replicas < 2 {
				errs = append(errs, fmt.Errorf("%s: the compensate worker needs at least 2 replicas, has %d", c, c.W.Replicas))
			}
		}
	}
	for _, sub := range []string{"serve", "compensate"} {
		if subs[sub] == 0 {
			errs = append(errs, fmt.Errorf("no workload runs idgen %s", sub))
		}
	}
	for _, w := range b.workloads() {
		if w.Selector == nil || len(w.Selector.MatchLabels) == 0 || !k8sLabelsMatch(w.Selector.MatchLabels, w.Template.Labels) {
			errs = append(errs, fmt.Errorf("%s: selector does not select its own pod template labels", w))
		}
		for _, c := range w.Template.Spec.Containers {
			if strings.Contains(c.Image, "zookeeper") && (w.Replicas < 3 || w.Replicas%2 == 0) {
				errs = append(errs, fmt.Errorf("%s: a ZooKeeper ensemble needs an odd number >= 3 of servers, has %d", w, w.Replicas))
			}
		}
	}
	return errs
}

// k8sCheckProbes: every (non-init) container has liveness, readiness and
// startup probes whose ports it declares; idgen's are HTTP GETs of
// /health/live (liveness, startup) and /health/ready (readiness) on the
// scheme it serves; its listen address is a declared port.
func k8sCheckProbes(b *k8sBundle, flags k8sFlagSets) []error {
	var errs []error
	for _, c := range b.containers() {
		if c.Init {
			continue
		}
		probes := []struct {
			kind string
			p    *corev1.Probe
			path string // for idgen
		}{
			{"liveness", c.C.LivenessProbe, "/health/live"},
			{"readiness", c.C.ReadinessProbe, "/health/ready"},
			{"startup", c.C.StartupProbe, "/health/"},
		}
		for _, pr := range probes {
			if pr.p == nil {
				errs = append(errs, fmt.Errorf("%s: no %s probe", c, pr.kind))
				continue
			}
			h := pr.p.ProbeHandler
			var port *intstr.IntOrString
			switch {
			case h.HTTPGet != nil:
				port = &h.HTTPGet.Port
			case h.TCPSocket != nil:
				port = &h.TCPSocket.Port
			case h.GRPC != nil:
				port = &intstr.IntOrString{Type: intstr.Int, IntVal: h.GRPC.Port}
			case h.Exec == nil || len(h.Exec.Command) == 0:
				errs = append(errs, fmt.Errorf("%s: %s probe has no handler", c, pr.kind))
			}
			if port != nil && !k8sDeclares(c.C, *port) {
				errs = append(errs, fmt.Errorf("%s: %s probe port %s is not a port of the container", c, pr.kind, port.String()))
			}
			if !c.Idgen {
				continue
			}
			if h.HTTPGet == nil {
				errs = append(errs, fmt.Errorf("%s: %s probe must be an HTTP GET of %s", c, pr.kind, pr.path))
				continue
			}
			if path := h.HTTPGet.Path; path != pr.path && !(pr.kind == "startup" && strings.HasPrefix(path, pr.path)) {
				errs = append(errs, fmt.Errorf("%s: %s probe path %q, want %s", c, pr.kind, path, pr.path))
			}
			want := corev1.URISchemeHTTP
			if b.k8sTLS(c, flags) {
				want = corev1.URISchemeHTTPS
			}
			if got := h.HTTPGet.Scheme; got != want && !(got == "" && want == corev1.URISchemeHTTP) {
				errs = append(errs, fmt.Errorf("%s: %s probe scheme %q, but the container serves %s", c, pr.kind, got, want))
			}
		}
		if c.Idgen {
			errs = append(errs, b.k8sCheckListen(c, flags)...)
		}
	}
	return errs
}

// k8sCheckListen: the address idgen listens on (serve --listen, compensate
// --metrics-listen) is a port the container declares.
func (b *k8sBundle) k8sCheckListen(c k8sContainer, flags k8sFlagSets) []error {
	env := map[string]string{"serve": "IDGEN_LISTEN", "compensate": "IDGEN_METRICS_LISTEN"}[c.Sub]
	f, ok := flags[c.Sub][env]
	if !ok {
		return []error{fmt.Errorf("%s: idgen %s has no flag %s", c, c.Sub, env)}
	}
	port, err := k8sListenPort(b.flagValue(c.C, f))
	if err != nil {
		return []error{fmt.Errorf("%s: --%s: %v", c, f.Name, err)}
	}
	if !k8sDeclares(c.C, intstr.FromInt32(port)) {
		return []error{fmt.Errorf("%s: listens on %d (--%s) but does not declare that port", c, port, f.Name)}
	}
	return nil
}

// k8sCheckSecurity: every pod runs as uid 65532, non-root, with the
// RuntimeDefault seccomp profile, without a service account token or host
// namespaces; every container without privilege escalation, on a read-only
// root filesystem, with all capabilities dropped.
func k8sCheckSecurity(b *k8sBundle, _ k8sFlagSets) []error {
	var errs []error
	sas := map[string]*corev1.ServiceAccount{}
	for _, sa := range k8sObjects[*corev1.ServiceAccount](b) {
		sas[sa.Name] = sa
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			errs = append(errs, fmt.Errorf("ServiceAccount/%s: automountServiceAccountToken must be false", sa.Name))
		}
	}
	for _, w := range b.workloads() {
		spec := &w.Template.Spec
		psc := spec.SecurityContext
		switch {
		case psc == nil:
			errs = append(errs, fmt.Errorf("%s: no pod securityContext", w))
		default:
			if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				errs = append(errs, fmt.Errorf("%s: pod runAsNonRoot must be true", w))
			}
			if psc.RunAsUser == nil || *psc.RunAsUser != k8sUID {
				errs = append(errs, fmt.Errorf("%s: pod runAsUser must be %d", w, k8sUID))
			}
			if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				errs = append(errs, fmt.Errorf("%s: pod seccompProfile must be RuntimeDefault", w))
			}
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			errs = append(errs, fmt.Errorf("%s: automountServiceAccountToken must be false", w))
		}
		if sa := spec.ServiceAccountName; sa == "" || sas[sa] == nil {
			errs = append(errs, fmt.Errorf("%s: serviceAccountName %q is not a ServiceAccount defined here", w, sa))
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			errs = append(errs, fmt.Errorf("%s: host namespaces are not allowed", w))
		}
		for _, v := range spec.Volumes {
			if v.HostPath != nil {
				errs = append(errs, fmt.Errorf("%s: hostPath volume %s", w, v.Name))
			}
		}
	}
	for _, c := range b.containers() {
		sc := c.C.SecurityContext
		if sc == nil {
			errs = append(errs, fmt.Errorf("%s: no securityContext", c))
			continue
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			errs = append(errs, fmt.Errorf("%s: allowPrivilegeEscalation must be false", c))
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			errs = append(errs, fmt.Errorf("%s: readOnlyRootFilesystem must be true", c))
		}
		if sc.Privileged != nil && *sc.Privileged {
			errs = append(errs, fmt.Errorf("%s: privileged", c))
		}
		if sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot {
			errs = append(errs, fmt.Errorf("%s: runAsNonRoot false", c))
		}
		if sc.RunAsUser != nil && *sc.RunAsUser != k8sUID {
			errs = append(errs, fmt.Errorf("%s: runAsUser %d, want %d", c, *sc.RunAsUser, k8sUID))
		}
		if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			errs = append(errs, fmt.Errorf("%s: seccompProfile %s, want RuntimeDefault", c, sc.SeccompProfile.Type))
		}
		dropsAll := false
		if caps := sc.Capabilities; caps != nil {
			for _, d := range caps.Drop {
				dropsAll = dropsAll || d == "ALL"
			}
			if len(caps.Add) > 0 {
				errs = append(errs, fmt.Errorf("%s: adds capabilities %v", c, caps.Add))
			}
		}
		if !dropsAll {
			errs = append(errs, fmt.Errorf("%s: capabilities must drop ALL", c))
		}
	}
	return errs
}

// k8sCheckResources: every container requests and limits CPU and memory,
// requests within limits.
func k8sCheckResources(b *k8sBundle, _ k8sFlagSets) []error {
	var errs []error
	for _, c := range b.containers() {
		r := c.C.Resources
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := r.Requests[name]
			lim, hasLim := r.Limits[name]
			if !hasReq {
				errs = append(errs, fmt.Errorf("%s: no %s request", c, name))
			}
			if !hasLim {
				errs = append(errs, fmt.Errorf("%s: no %s limit", c, name))
			}
			if hasReq && hasLim && req.Cmp(lim) > 0 {
				errs = append(errs, fmt.Errorf("%s: %s request %s above its limit %s", c, name, req.String(), lim.String()))
			}
		}
	}
	return errs
}
