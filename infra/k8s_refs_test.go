package infra

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The cross-object checks: names that one manifest uses and another must
// define, and the files kustomize applies.

// k8sSecretName is the one Secret the workloads may reference; it is
// created by hand from files (README.md), never committed.
const k8sSecretName = "idgen-secrets"

// k8sCheckNamespace: the Namespace exists; every namespaced object is in
// it; names are unique per kind.
func k8sCheckNamespace(b *k8sBundle, _ k8sFlagSets) []error {
	var errs []error
	found := false
	seen := map[string]*k8sDoc{}
	for _, d := range b.Docs {
		if d.Kind == "Namespace" && d.Name == k8sNamespace {
			found = true
		}
		if d.Name == "" {
			errs = append(errs, fmt.Errorf("%s: no metadata.name", d))
		}
		if k8sClusterScoped[d.Kind] {
			if d.Namespace != "" {
				errs = append(errs, fmt.Errorf("%s: cluster-scoped, must not set a namespace", d))
			}
		} else if d.Namespace != k8sNamespace {
			errs = append(errs, fmt.Errorf("%s: namespace %q, want %q", d, d.Namespace, k8sNamespace))
		}
		key := d.Kind + "/" + d.Name
		if prev := seen[key]; prev != nil {
			errs = append(errs, fmt.Errorf("%s: defined twice (also %s)", d, prev))
		}
		seen[key] = d
	}
	if !found {
		errs = append(errs, fmt.Errorf("no Namespace %s", k8sNamespace))
	}
	return errs
}

// k8sCheckKustomization: every resource of kustomization.yaml exists and is
// a manifest here, every manifest is listed once, every image override
// names an image the containers use.
func k8sCheckKustomization(b *k8sBundle, _ k8sFlagSets) []error {
	k := b.Kustomization
	if k == nil {
		return []error{fmt.Errorf("no kustomization.yaml")}
	}
	var errs []error
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		errs = append(errs, fmt.Errorf("kustomization.yaml: apiVersion/kind %s/%s", k.APIVersion, k.Kind))
	}
	if k.Namespace != k8sNamespace {
		errs = append(errs, fmt.Errorf("kustomization.yaml: namespace %q, want %q", k.Namespace, k8sNamespace))
	}
	listed := map[string]bool{}
	for _, r := range k.Resources {
		r = filepath.ToSlash(filepath.Clean(r))
		if listed[r] {
			errs = append(errs, fmt.Errorf("kustomization.yaml: %s listed twice", r))
		}
		listed[r] = true
		if _, err := os.Stat(filepath.Join(b.Dir, r)); err != nil {
			errs = append(errs, fmt.Errorf("kustomization.yaml: resource %s: %v", r, err))
		} else if !slices.Contains(b.Files, r) {
			errs = append(errs, fmt.Errorf("kustomization.yaml: resource %s is not a manifest of %s", r, b.Dir))
		}
	}
	for _, f := range b.Files {
		if !listed[f] {
			errs = append(errs, fmt.Errorf("%s is not listed in kustomization.yaml", f))
		}
	}
	repos := map[string]bool{}
	for _, c := range b.containers() {
		repo := c.C.Image
		if i := strings.LastIndexAny(repo, ":@"); i > strings.LastIndex(repo, "/") {
			repo = repo[:i]
		}
		repos[repo] = true
	}
	for _, img := range k.Images {
		if !repos[img.Name] {
			errs = append(errs, fmt.Errorf("kustomization.yaml: image %s is used by no container", img.Name))
		}
	}
	return errs
}

// k8sCheckServices: every Service selects the pods of exactly one workload,
// on ports those pods declare; ClusterIP only; the idgen Service maps port
// 80 to the port idgen serve listens on.
func k8sCheckServices(b *k8sBundle, flags k8sFlagSets) []error {
	var errs []error
	for _, svc := range k8sObjects[*corev1.Service](b) {
		name := "Service/" + svc.Name
		if t := svc.Spec.Type; t != "" && t != corev1.ServiceTypeClusterIP {
			errs = append(errs, fmt.Errorf("%s: type %s, want ClusterIP (exposure is the ingress's job)", name, t))
		}
		ws := b.selecting(svc.Spec.Selector)
		if len(ws) != 1 {
			errs = append(errs, fmt.Errorf("%s: selector %v selects %d workloads %v, want exactly 1", name, svc.Spec.Selector, len(ws), ws))
			continue
		}
		w := ws[0]
		if len(svc.Spec.Ports) == 0 {
			errs = append(errs, fmt.Errorf("%s: no ports", name))
		}
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			if k8sWorkloadPort(w, target) == 0 {
				errs = append(errs, fmt.Errorf("%s: port %d targets %s, which %s does not declare", name, p.Port, target.String(), w))
			}
		}
	}
	// The API of idgen serve: port 80 of a Service, to --listen.
	for _, c := range b.containers() {
		if c.Sub != "serve" {
			continue
		}
		f := flags["serve"]["IDGEN_LISTEN"]
		listen, err := k8sListenPort(b.flagValue(c.C, f))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: --listen: %v", c, err))
			continue
		}
		ok := false
		for _, svc := range k8sObjects[*corev1.Service](b) {
			if ws := b.selecting(svc.Spec.Selector); len(ws) != 1 || ws[0].String() != c.W.String() {
				continue
			}
			for _, p := range svc.Spec.Ports {
				if p.Port == 80 && k8sWorkloadPort(c.W, p.TargetPort) == listen {
					ok = true
				}
			}
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no Service maps port 80 to its listen port %d", c, listen))
		}
	}
	return errs
}

// k8sCheckStatefulSets: a StatefulSet's serviceName is a headless Service
// here that selects it and publishes not-ready pods (peers find each other
// before they are ready); its volumes are retained.
func k8sCheckStatefulSets(b *k8sBundle, _ k8sFlagSets) []error {
	var errs []error
	services := map[string]*corev1.Service{}
	for _, svc := range k8sObjects[*corev1.Service](b) {
		services[svc.Name] = svc
	}
	for _, w := range b.workloads() {
		sts := w.StatefulSet
		if sts == nil {
			continue
		}
		svc := services[sts.Spec.ServiceName]
		switch {
		case svc == nil:
			errs = append(errs, fmt.Errorf("%s: serviceName %q is not a Service defined here", w, sts.Spec.ServiceName))
		case svc.Spec.ClusterIP != corev1.ClusterIPNone:
			errs = append(errs, fmt.Errorf("%s: Service %s is not headless", w, svc.Name))
		case !svc.Spec.PublishNotReadyAddresses:
			errs = append(errs, fmt.Errorf("%s: headless Service %s must publish not-ready addresses", w, svc.Name))
		default:
			if ws := b.selecting(svc.Spec.Selector); len(ws) != 1 || ws[0].Kind != w.Kind || ws[0].Name != w.Name {
				errs = append(errs, fmt.Errorf("%s: headless Service %s selects %v", w, svc.Name, ws))
			}
		}
		if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p != nil && (p.WhenDeleted == "Delete" || p.WhenScaled == "Delete") {
			errs = append(errs, fmt.Errorf("%s: its volumes must be retained", w))
		}
		for _, pvc := range sts.Spec.VolumeClaimTemplates {
			if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
				errs = append(errs, fmt.Errorf("%s: volumeClaimTemplate %s requests no storage", w, pvc.Name))
			}
		}
	}
	return errs
}

// k8sCheckHPA: every HPA scales a workload defined here (idgen serve has
// one) on CPU, memory and a documented Pods metric, never below the
// workload's own replicas, with requests on every container (utilization
// needs them).
func k8sCheckHPA(b *k8sBundle, _ k8sFlagSets) []error {
	var errs []error
	scaled := map[string]bool{}
	for _, h := range k8sObjects[*autoscalingv2.HorizontalPodAutoscaler](b) {
		name := "HorizontalPodAutoscaler/" + h.Name
		ref := h.Spec.ScaleTargetRef
		var w *k8sWorkload
		for _, x := range b.workloads() {
			if x.Kind == ref.Kind && x.Name == ref.Name {
				w = x
			}
		}
		if w == nil || ref.APIVersion != "apps/v1" {
			errs = append(errs, fmt.Errorf("%s: scaleTargetRef %s %s/%s is not a workload defined here", name, ref.APIVersion, ref.Kind, ref.Name))
			continue
		}
		scaled[w.String()] = true
		minR := int32(1)
		if h.Spec.MinReplicas != nil {
			minR = *h.Spec.MinReplicas
		}
		if minR < w.Replicas {
			errs = append(errs, fmt.Errorf("%s: minReplicas %d below the %d replicas of %s", name, minR, w.Replicas, w))
		}
		if h.Spec.MaxReplicas < minR {
			errs = append(errs, fmt.Errorf("%s: maxReplicas %d below minReplicas %d", name, h.Spec.MaxReplicas, minR))
		}
		kinds := map[string]bool{}
		for _, m := range h.Spec.Metrics {
			switch {
			case m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil:
				kinds[string(m.Resource.Name)] = true
			case m.Type == autoscalingv2.PodsMetricSourceType && m.Pods != nil:
				kinds["pods"] = true
				if n := m.Pods.Metric.Name; !strings.Contains(b.README, n) || !strings.Contains(b.README, "prometheus-adapter") {
					errs = append(errs, fmt.Errorf("%s: Pods metric %s has no prometheus-adapter rule in README.md", name, n))
				}
			}
		}
		for _, k := range []string{"cpu", "memory", "pods"} {
			if !kinds[k] {
				errs = append(errs, fmt.Errorf("%s: no %s metric", name, k))
			}
		}
		for _, c := range w.Template.Spec.Containers {
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
				errs = append(errs, fmt.Errorf("%s: container %s of %s has no CPU and memory requests to compute utilization from", name, c.Name, w))
			}
		}
	}
	for _, c := range b.containers() {
		if c.Sub == "serve" {
			if !scaled[c.W.String()] {
				errs = append(errs, fmt.Errorf("%s: no HorizontalPodAutoscaler", c.W))
			}
		}
	}
	return errs
}

// k8sCheckPDB: every PDB selects exactly one workload and lets at least one
// pod go (or drains block forever); a StatefulSet's PDB keeps a majority
// (quorum); every workload of several replicas has exactly one PDB.
func k8sCheckPDB(b *k8sBundle, _ k8sFlagSets) []error {
	var errs []error
	covered := map[string]int{}
	for _, p := range k8sObjects[*policyv1.PodDisruptionBudget](b) {
		name := "PodDisruptionBudget/" + p.Name
		ws, err := b.selectingLS(p.Spec.Selector)
		if err != nil || len(ws) != 1 {
			errs = append(errs, fmt.Errorf("%s: selects %v (%v), want exactly 1 workload", name, ws, err))
			continue
		}
		w := ws[0]
		covered[w.String()]++
		if (p.Spec.MaxUnavailable == nil) == (p.Spec.MinAvailable == nil) {
			errs = append(errs, fmt.Errorf("%s: set exactly one of maxUnavailable and minAvailable", name))
			continue
		}
		// Pods that may be down at once.
		var down int
		if p.Spec.MaxUnavailable != nil {
			v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, int(w.Replicas), true)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", name, err))
				continue
			}
			down = v
		} else {
			v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, int(w.Replicas), true)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %v", name, err))
				continue
			}
			down = int(w.Replicas) - v
		}
		if down < 1 {
			errs = append(errs, fmt.Errorf("%s: allows no disruption of %s: node drains would block", name, w))
		}
		if w.StatefulSet != nil && int(w.Replicas)-down <= int(w.Replicas)/2 {
			errs = append(errs, fmt.Errorf("%s: lets %d of %d pods of %s go: no majority left", name, down, w.Replicas, w))
		}
	}
	for _, w := range b.workloads() {
		if n := covered[w.String()]; w.Replicas >= 2 && n != 1 {
			errs = append(errs, fmt.Errorf("%s: %d PodDisruptionBudgets, want 1", w, n))
		}
	}
	return errs
}
