package infra

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// k8sCheckPaths: every volume mount names a volume (or claim template) of
// its pod and every volume is mounted; every absolute path a container is
// given (env values, command line, exec probes and hooks) that lies under a
// ConfigMap or Secret mount names a file that mount holds; and the paths
// given to idgen lie under a mount at all (its image holds only the binary).
func k8sCheckPaths(b *k8sBundle, _ k8sFlagSets) []error {
	var errs []error
	for _, w := range b.workloads() {
		spec := &w.Template.Spec
		vols := map[string]*corev1.Volume{}
		for i := range spec.Volumes {
			vols[spec.Volumes[i].Name] = &spec.Volumes[i]
		}
		claims := map[string]bool{}
		if w.StatefulSet != nil {
			for _, pvc := range w.StatefulSet.Spec.VolumeClaimTemplates {
				claims[pvc.Name] = true
			}
		}
		mounted := map[string]bool{}
		for _, c := range b.containers() {
			if c.W.String() != w.String() {
				continue
			}
			for _, m := range c.C.VolumeMounts {
				mounted[m.Name] = true
				if vols[m.Name] == nil && !claims[m.Name] {
					errs = append(errs, fmt.Errorf("%s: mounts %s, which is neither a volume nor a claim template", c, m.Name))
				}
			}
			for _, p := range k8sPathsOf(c) {
				if err := b.k8sCheckPath(c, vols, p); err != nil {
					errs = append(errs, err)
				}
			}
		}
		for name := range vols {
			if !mounted[name] {
				errs = append(errs, fmt.Errorf("%s: volume %s is mounted by no container", w, name))
			}
		}
		for name := range claims {
			if !mounted[name] {
				errs = append(errs, fmt.Errorf("%s: volumeClaimTemplate %s is mounted by no container", w, name))
			}
		}
	}
	return errs
}

// k8sPath is an absolute path a container is given, and where.
type k8sPath struct {
	Where string
	Path  string
	Env   bool // an environment variable's value
}

func k8sPathsOf(c k8sContainer) []k8sPath {
	var out []k8sPath
	add := func(where string, argv []string, env bool) {
		for _, a := range argv {
			if strings.HasPrefix(a, "/") {
				out = append(out, k8sPath{Where: where, Path: a, Env: env})
			}
		}
	}
	for _, e := range c.C.Env {
		if e.ValueFrom == nil {
			add("env "+e.Name, []string{e.Value}, true)
		}
	}
	add("command", c.C.Command, false)
	add("args", c.C.Args, false)
	for kind, p := range map[string]*corev1.Probe{"liveness": c.C.LivenessProbe, "readiness": c.C.ReadinessProbe, "startup": c.C.StartupProbe} {
		if p != nil && p.Exec != nil {
			add(kind+" probe", p.Exec.Command, false)
		}
	}
	if l := c.C.Lifecycle; l != nil {
		for kind, h := range map[string]*corev1.LifecycleHandler{"postStart": l.PostStart, "preStop": l.PreStop} {
			if h != nil && h.Exec != nil {
				add(kind+" hook", h.Exec.Command, false)
			}
		}
	}
	return out
}

// k8sCheckPath checks one path of container c against its mounts.
func (b *k8sBundle) k8sCheckPath(c k8sContainer, vols map[string]*corev1.Volume, p k8sPath) error {
	var m *corev1.VolumeMount
	for i := range c.C.VolumeMounts {
		mp := strings.TrimSuffix(c.C.VolumeMounts[i].MountPath, "/")
		if (p.Path == mp || strings.HasPrefix(p.Path, mp+"/")) && (m == nil || len(mp) > len(strings.TrimSuffix(m.MountPath, "/"))) {
			m = &c.C.VolumeMounts[i]
		}
	}
	if m == nil {
		// A file of the image; idgen's image has none but the binary.
		if c.Idgen && p.Env {
			return fmt.Errorf("%s: %s %s is under no volume mount (the idgen image holds only its binary)", c, p.Where, p.Path)
		}
		return nil
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(p.Path, strings.TrimSuffix(m.MountPath, "/")), "/")
	if rel == "" || m.SubPath != "" {
		return nil
	}
	v := vols[m.Name]
	if v == nil {
		return nil // a claim template: any file
	}
	var files []string
	switch {
	case v.Secret != nil && len(v.Secret.Items) > 0:
		for _, it := range v.Secret.Items {
			files = append(files, it.Path)
		}
	case v.Secret != nil:
		return nil // every key of a Secret this repository does not hold
	case v.ConfigMap != nil && len(v.ConfigMap.Items) > 0:
		for _, it := range v.ConfigMap.Items {
			files = append(files, it.Path)
		}
	case v.ConfigMap != nil:
		if cm := b.configMap(v.ConfigMap.Name); cm != nil {
			for k := range cm.Data {
				files = append(files, k)
			}
		}
	default:
		return nil // emptyDir and the like: written at run time
	}
	for _, f := range files {
		if rel == f || strings.HasPrefix(rel, f+"/") {
			return nil
		}
	}
	return fmt.Errorf("%s: %s %s: volume %s holds no file %q (has %v)", c, p.Where, p.Path, m.Name, rel, files)
}
