package infra

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The configuration checks: ConfigMaps, the Secret, and the environment
// idgen reads its flags from.

// k8sConfigRef is one reference of a pod to a ConfigMap or a Secret.
type k8sConfigRef struct {
	Kind  string   // ConfigMap or Secret
	Name  string   // of the ConfigMap or Secret
	Keys  []string // the keys named; none where every key is used (envFrom, a volume without items)
	Where string   // the container's variable or the workload's volume that refers to it
}

// configRefs lists every reference the pods make to ConfigMaps and Secrets:
// env valueFrom, envFrom, volumes and projected volume sources.
func (b *k8sBundle) configRefs() []k8sConfigRef {
	var refs []k8sConfigRef
	add := func(kind, where, name string, keys ...string) {
		refs = append(refs, k8sConfigRef{Kind: kind, Name: name, Keys: keys, Where: where})
	}
	for _, c := range b.containers() {
		for _, e := range c.C.Env {
			if e.ValueFrom == nil {
				continue
			}
			where := fmt.Sprintf("%s env %s", c, e.Name)
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				add("ConfigMap", where, r.Name, r.Key)
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				add("Secret", where, r.Name, r.Key)
			}
		}
		for _, ef := range c.C.EnvFrom {
			where := fmt.Sprintf("%s envFrom", c)
			if ef.ConfigMapRef != nil {
				add("ConfigMap", where, ef.ConfigMapRef.Name)
			}
			if ef.SecretRef != nil {
				add("Secret", where, ef.SecretRef.Name)
			}
		}
	}
	for _, w := range b.workloads() {
		for _, v := range w.Template.Spec.Volumes {
			where := fmt.Sprintf("%s volume %s", w, v.Name)
			if v.ConfigMap != nil {
				add("ConfigMap", where, v.ConfigMap.Name, k8sItemKeys(v.ConfigMap.Items)...)
			}
			if v.Secret != nil {
				add("Secret", where, v.Secret.SecretName, k8sItemKeys(v.Secret.Items)...)
			}
			if v.Projected == nil {
				continue
			}
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil {
					add("ConfigMap", where, s.ConfigMap.Name, k8sItemKeys(s.ConfigMap.Items)...)
				}
				if s.Secret != nil {
					add("Secret", where, s.Secret.Name, k8sItemKeys(s.Secret.Items)...)
				}
			}
		}
	}
	return refs
}

func k8sItemKeys(items []corev1.KeyToPath) []string {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = it.Key
	}
	return keys
}

// k8sCheckConfigMaps: every ConfigMap a pod uses (configMapKeyRef, envFrom,
// volume, projected) is defined here, with the keys used; every ConfigMap
// defined is used.
func k8sCheckConfigMaps(b *k8sBundle, _ k8sFlagSets) []error {
	var errs []error
	used := map[string]bool{}
	for _, r := range b.configRefs() {
		if r.Kind != "ConfigMap" {
			continue
		}
		used[r.Name] = true
		cm := b.configMap(r.Name)
		if cm == nil {
			errs = append(errs, fmt.Errorf("%s: ConfigMap %q is not defined here", r.Where, r.Name))
			continue
		}
		for _, k := range r.Keys {
			if _, ok := cm.Data[k]; !ok {
				errs = append(errs, fmt.Errorf("%s: ConfigMap %s has no key %q", r.Where, r.Name, k))
			}
		}
	}
	for _, cm := range k8sObjects[*corev1.ConfigMap](b) {
		if !used[cm.Name] {
			errs = append(errs, fmt.Errorf("ConfigMap/%s is used by no workload", cm.Name))
		}
	}
	return errs
}

// k8sCheckSecrets: no secret value is committed (no Secret with data, no
// literal password in an env var); every secret a pod uses is idgen-secrets,
// documented in README.md with each key used.
func k8sCheckSecrets(b *k8sBundle, _ k8sFlagSets) []error {
	var errs []error
	for _, s := range k8sObjects[*corev1.Secret](b) {
		if len(s.Data)+len(s.StringData) > 0 {
			errs = append(errs, fmt.Errorf("Secret/%s: secret values must not be committed", s.Name))
		}
	}
	if !strings.Contains(b.README, "kubectl create secret generic "+k8sSecretName) {
		errs = append(errs, fmt.Errorf("README.md does not show how to create %s", k8sSecretName))
	}
	for _, c := range b.containers() {
		for _, e := range c.C.Env {
			up := strings.ToUpper(e.Name)
			secretish := strings.Contains(up, "PASSWORD") || strings.Contains(up, "SECRET") || strings.Contains(up, "TOKEN") || strings.HasSuffix(up, "_AUTH")
			if secretish && !strings.HasSuffix(up, "_FILE") && e.Value != "" && !strings.HasPrefix(e.Value, "/") {
				errs = append(errs, fmt.Errorf("%s env %s: a literal secret value; use a secretKeyRef or a file", c, e.Name))
			}
		}
	}
	for _, r := range b.configRefs() {
		if r.Kind != "Secret" {
			continue
		}
		if r.Name != k8sSecretName {
			errs = append(errs, fmt.Errorf("%s: Secret %q, want %s", r.Where, r.Name, k8sSecretName))
		}
		for _, k := range r.Keys {
			if !strings.Contains(b.README, "`"+k+"`") {
				errs = append(errs, fmt.Errorf("%s: key %q of %s is not documented in README.md", r.Where, k, r.Name))
			}
		}
	}
	return errs
}

// k8sRuntimeEnv are variables an idgen container may set that are not
// flags: the Go runtime's.
var k8sRuntimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GODEBUG": true}

// k8sCheckEnvFlags: every IDGEN_* variable an idgen container gets is a
// flag of the subcommand it runs (from `idgen <sub> -h`), or the Redis
// password; any other variable is the Go runtime's or a helper that a later
// variable or the command line uses as $(NAME). Every IDGEN_* key of a
// ConfigMap an idgen container reads is a flag of some subcommand.
func k8sCheckEnvFlags(b *k8sBundle, flags k8sFlagSets) []error {
	var errs []error
	anySub := map[string]bool{}
	for _, fs := range flags {
		for env := range fs {
			anySub[env] = true
		}
	}
	readCMs := map[string]bool{}
	for _, c := range b.containers() {
		if !c.Idgen {
			continue
		}
		fs, ok := flags[c.Sub]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: runs idgen %q, whose flags the test does not know", c, c.Sub))
			continue
		}
		check := func(name, where string) {
			if strings.HasPrefix(name, "IDGEN_") {
				if _, ok := fs[name]; !ok && !k8sExtraEnv[name] {
					errs = append(errs, fmt.Errorf("%s: %s%s is not a flag of idgen %s", c, name, where, c.Sub))
				}
			}
		}
		seen := map[string]bool{}
		for i, e := range c.C.Env {
			if seen[e.Name] {
				errs = append(errs, fmt.Errorf("%s: %s set twice", c, e.Name))
			}
			seen[e.Name] = true
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				readCMs[e.ValueFrom.ConfigMapKeyRef.Name] = true
			}
			if strings.HasPrefix(e.Name, "IDGEN_") {
				check(e.Name, "")
				continue
			}
			if !k8sRuntimeEnv[e.Name] && !k8sReferenced(c.C, i, e.Name) {
				errs = append(errs, fmt.Errorf("%s: %s is neither an idgen flag, a Go runtime variable, nor used as $(%s)", c, e.Name, e.Name))
			}
		}
		for _, ef := range c.C.EnvFrom {
			if ef.ConfigMapRef == nil {
				continue
			}
			readCMs[ef.ConfigMapRef.Name] = true
			if cm := b.configMap(ef.ConfigMapRef.Name); cm != nil {
				for k := range cm.Data {
					check(ef.Prefix+k, " (envFrom "+cm.Name+")")
				}
			}
		}
	}
	names := make([]string, 0, len(readCMs))
	for n := range readCMs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if cm := b.configMap(n); cm != nil {
			for k := range cm.Data {
				if strings.HasPrefix(k, "IDGEN_") && !anySub[k] && !k8sExtraEnv[k] {
					errs = append(errs, fmt.Errorf("ConfigMap/%s: %s is not a flag of idgen serve or compensate", n, k))
				}
			}
		}
	}
	return errs
}

// k8sReferenced reports whether $(name) is used by a variable after index
// i (Kubernetes expands only earlier variables) or by the command line.
func k8sReferenced(c *corev1.Container, i int, name string) bool {
	ref := "$(" + name + ")"
	for _, e := range c.Env[i+1:] {
		if strings.Contains(e.Value, ref) {
			return true
		}
	}
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if strings.Contains(a, ref) {
			return true
		}
	}
	return false
}
