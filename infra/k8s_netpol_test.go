package infra

import (
	"fmt"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// k8sServeEgressPorts are the only ports idgen serve may reach: ZooKeeper,
// Redis, Sentinel and DNS.
var k8sServeEgressPorts = []int32{2181, 6379, 26379, 53}

// k8sCheckNetworkPolicy: a default-deny policy covers the namespace and
// every workload has its own policy; a policy's ingress ports are ports its
// pods declare; every egress rule names its peers (no "anywhere"), peers in
// this namespace are workloads defined here reached on ports they declare,
// peers elsewhere are reached on DNS only. idgen serve accepts only its
// listen port and reaches only ZooKeeper, Redis, Sentinel and DNS.
func k8sCheckNetworkPolicy(b *k8sBundle, flags k8sFlagSets) []error {
	var errs []error
	denyAll := false
	selected := map[string]bool{}
	for _, np := range k8sObjects[*networkingv1.NetworkPolicy](b) {
		name := "NetworkPolicy/" + np.Name
		types := np.Spec.PolicyTypes
		if !slices.Contains(types, networkingv1.PolicyTypeIngress) || !slices.Contains(types, networkingv1.PolicyTypeEgress) {
			errs = append(errs, fmt.Errorf("%s: policyTypes must be Ingress and Egress", name))
		}
		ps := np.Spec.PodSelector
		if len(ps.MatchLabels) == 0 && len(ps.MatchExpressions) == 0 {
			if len(np.Spec.Ingress)+len(np.Spec.Egress) > 0 {
				errs = append(errs, fmt.Errorf("%s: selects every pod and allows traffic", name))
			}
			denyAll = true
			continue
		}
		ws, err := b.selectingLS(&ps)
		if err != nil || len(ws) != 1 {
			errs = append(errs, fmt.Errorf("%s: podSelector selects %v (%v), want exactly 1 workload", name, ws, err))
			continue
		}
		w := ws[0]
		selected[w.String()] = true
		var serve *k8sContainer
		for _, c := range b.containers() {
			if c.Sub == "serve" && c.W.String() == w.String() {
				serve = &c
			}
		}
		for i, rule := range np.Spec.Ingress {
			if len(rule.Ports) == 0 {
				errs = append(errs, fmt.Errorf("%s: ingress rule %d allows every port", name, i))
			}
			for _, p := range rule.Ports {
				if p.Port == nil || k8sWorkloadPort(w, *p.Port) == 0 {
					errs = append(errs, fmt.Errorf("%s: ingress port %v is not a port of %s", name, k8sPortString(p.Port), w))
					continue
				}
				if serve != nil {
					listen, err := k8sListenPort(b.flagValue(serve.C, flags["serve"]["IDGEN_LISTEN"]))
					if err != nil || k8sWorkloadPort(w, *p.Port) != listen {
						errs = append(errs, fmt.Errorf("%s: idgen serve accepts ingress only on its listen port, not %v", name, k8sPortString(p.Port)))
					}
				}
			}
			for _, peer := range rule.From {
				if peer.PodSelector != nil && peer.NamespaceSelector == nil {
					if ws, err := b.selectingLS(peer.PodSelector); err != nil || len(ws) != 1 {
						errs = append(errs, fmt.Errorf("%s: ingress peer %v selects %v (%v), want exactly 1 workload", name, peer.PodSelector.MatchLabels, ws, err))
					}
				}
			}
		}
		for i, rule := range np.Spec.Egress {
			if len(rule.To) == 0 || len(rule.Ports) == 0 {
				errs = append(errs, fmt.Errorf("%s: egress rule %d allows any destination or port", name, i))
				continue
			}
			for _, peer := range rule.To {
				switch {
				case peer.IPBlock != nil:
					errs = append(errs, fmt.Errorf("%s: egress rule %d to an ipBlock", name, i))
				case peer.NamespaceSelector != nil:
					for _, p := range rule.Ports {
						if p.Port == nil || p.Port.IntValue() != 53 {
							errs = append(errs, fmt.Errorf("%s: egress rule %d leaves the namespace on port %v, only DNS (53) may", name, i, k8sPortString(p.Port)))
						}
					}
				case peer.PodSelector != nil:
					ws, err := b.selectingLS(peer.PodSelector)
					if err != nil || len(ws) != 1 {
						errs = append(errs, fmt.Errorf("%s: egress peer %v selects %v (%v), want exactly 1 workload", name, peer.PodSelector.MatchLabels, ws, err))
						continue
					}
					for _, p := range rule.Ports {
						if p.Port == nil || k8sWorkloadPort(ws[0], *p.Port) == 0 {
							errs = append(errs, fmt.Errorf("%s: egress to %s on port %v, which it does not declare", name, ws[0], k8sPortString(p.Port)))
						}
					}
				}
			}
			if serve != nil {
				for _, p := range rule.Ports {
					if p.Port == nil || !slices.Contains(k8sServeEgressPorts, int32(p.Port.IntValue())) {
						errs = append(errs, fmt.Errorf("%s: idgen serve may reach only ports %v, not %v", name, k8sServeEgressPorts, k8sPortString(p.Port)))
					}
				}
			}
		}
	}
	if !denyAll {
		errs = append(errs, fmt.Errorf("no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)"))
	}
	for _, w := range b.workloads() {
		if !selected[w.String()] {
			errs = append(errs, fmt.Errorf("%s: no NetworkPolicy of its own", w))
		}
	}
	return errs
}

func k8sPortString(p *intstr.IntOrString) string {
	if p == nil {
		return "<all>"
	}
	return p.String()
}
