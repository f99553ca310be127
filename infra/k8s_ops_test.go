package infra

import (
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The operational checks: how idgen pods shut down, are scraped, and are
// placed.

// k8sCheckGrace: a pod of idgen serve drains before it is killed: a drain
// delay is set, readiness fails within it (endpoints are removed before the
// listener closes), and terminationGracePeriodSeconds exceeds drain delay +
// shutdown grace.
func k8sCheckGrace(b *k8sBundle, flags k8sFlagSets) []error {
	var errs []error
	seen := 0
	for _, c := range b.containers() {
		if c.Sub != "serve" {
			continue
		}
		seen++
		dur := func(env string) (time.Duration, error) {
			f, ok := flags["serve"][env]
			if !ok {
				return 0, fmt.Errorf("idgen serve has no flag %s", env)
			}
			v := b.flagValue(c.C, f)
			if v == "" {
				return 0, nil
			}
			d, err := time.ParseDuration(v)
			if err != nil {
				return 0, fmt.Errorf("--%s %q: %v", f.Name, v, err)
			}
			return d, nil
		}
		drain, err1 := dur("IDGEN_DRAIN_DELAY")
		grace, err2 := dur("IDGEN_SHUTDOWN_GRACE")
		if err1 != nil || err2 != nil {
			errs = append(errs, fmt.Errorf("%s: %v %v", c, err1, err2))
			continue
		}
		tgps := int64(corev1.DefaultTerminationGracePeriodSeconds)
		if p := c.W.Template.Spec.TerminationGracePeriodSeconds; p != nil {
			tgps = *p
		}
		if drain <= 0 {
			errs = append(errs, fmt.Errorf("%s: no drain delay: the listener would close while endpoints still route to the pod", c))
		}
		if time.Duration(tgps)*time.Second <= drain+grace {
			errs = append(errs, fmt.Errorf("%s: terminationGracePeriodSeconds %d must exceed drain delay %s + shutdown grace %s", c, tgps, drain, grace))
		}
		if p := c.C.ReadinessProbe; p != nil {
			period, failures := p.PeriodSeconds, p.FailureThreshold
			if period == 0 {
				period = 10
			}
			if failures == 0 {
				failures = 3
			}
			if fail := time.Duration(period*failures) * time.Second; fail >= drain {
				errs = append(errs, fmt.Errorf("%s: readiness needs %s to fail, not within the drain delay %s", c, fail, drain))
			}
		}
	}
	if seen == 0 {
		errs = append(errs, fmt.Errorf("no idgen serve container"))
	}
	return errs
}

// k8sCheckScrape: pods running idgen carry the prometheus.io annotations,
// on a port the pod declares, with the scheme that port serves.
func k8sCheckScrape(b *k8sBundle, flags k8sFlagSets) []error {
	var errs []error
	for _, c := range b.containers() {
		if !c.Idgen || c.Init {
			continue
		}
		a := c.W.Template.Annotations
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" {
			errs = append(errs, fmt.Errorf("%s: needs annotations prometheus.io/scrape \"true\" and prometheus.io/path /metrics", c.W))
		}
		port, err := strconv.ParseInt(a["prometheus.io/port"], 10, 32)
		if err != nil || !k8sDeclares(c.C, intstr.FromInt32(int32(port))) {
			errs = append(errs, fmt.Errorf("%s: prometheus.io/port %q is not a port of %s", c.W, a["prometheus.io/port"], c.C.Name))
		}
		want := "http"
		if b.k8sTLS(c, flags) {
			want = "https"
		}
		if got := a["prometheus.io/scheme"]; got != want && !(got == "" && want == "http") {
			errs = append(errs, fmt.Errorf("%s: prometheus.io/scheme %q, but %s serves %s", c.W, got, c.C.Name, want))
		}
	}
	return errs
}

// k8sCheckSpread: every workload of several replicas spreads over zones and
// keeps replicas off one node (anti-affinity); idgen serve also spreads
// over nodes. Selectors must select the workload's own pods.
func k8sCheckSpread(b *k8sBundle, _ k8sFlagSets) []error {
	const zone, host = "topology.kubernetes.io/zone", "kubernetes.io/hostname"
	var errs []error
	serve := map[string]bool{}
	for _, c := range b.containers() {
		if c.Sub == "serve" {
			serve[c.W.String()] = true
		}
	}
	for _, w := range b.workloads() {
		if w.Replicas < 2 {
			continue
		}
		spec := &w.Template.Spec
		spread := map[string]bool{}
		for _, tsc := range spec.TopologySpreadConstraints {
			if tsc.LabelSelector == nil || !k8sLabelsMatch(tsc.LabelSelector.MatchLabels, w.Template.Labels) || len(tsc.LabelSelector.MatchLabels) == 0 {
				errs = append(errs, fmt.Errorf("%s: topology spread over %s does not select its own pods", w, tsc.TopologyKey))
				continue
			}
			spread[tsc.TopologyKey] = true
		}
		if !spread[zone] {
			errs = append(errs, fmt.Errorf("%s: no topologySpreadConstraint over %s", w, zone))
		}
		if serve[w.String()] && !spread[host] {
			errs = append(errs, fmt.Errorf("%s: no topologySpreadConstraint over %s", w, host))
		}
		anti := false
		if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
			terms := a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
			for _, wt := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
				terms = append(terms, wt.PodAffinityTerm)
			}
			for _, t := range terms {
				if t.TopologyKey == host && t.LabelSelector != nil && len(t.LabelSelector.MatchLabels) > 0 && k8sLabelsMatch(t.LabelSelector.MatchLabels, w.Template.Labels) {
					anti = true
				}
			}
		}
		if !anti {
			errs = append(errs, fmt.Errorf("%s: no podAntiAffinity over %s selecting its own pods", w, host))
		}
	}
	return errs
}
