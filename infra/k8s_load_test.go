package infra

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// k8sNamespace is where every namespaced object of infra/k8s lives.
const k8sNamespace = "idgen"

// k8sKinds maps "apiVersion/kind" to a constructor of the typed object a
// document of that kind is decoded into. A document of any other
// apiVersion/kind is an error: the test cannot check what it cannot decode.
var k8sKinds = map[string]func() any{
	"v1/Namespace":                           func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                           func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                              func() any { return new(corev1.Secret) },
	"v1/Service":                             func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                      func() any { return new(corev1.ServiceAccount) },
	"apps/v1/Deployment":                     func() any { return new(appsv1.Deployment) },
	"apps/v1/StatefulSet":                    func() any { return new(appsv1.StatefulSet) },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"policy/v1/PodDisruptionBudget":          func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return new(networkingv1.NetworkPolicy) },
}

// k8sClusterScoped are the kinds without a namespace.
var k8sClusterScoped = map[string]bool{"Namespace": true}

// k8sDoc is one decoded YAML document of a manifest file.
type k8sDoc struct {
	File       string // relative to the manifest directory
	Index      int    // position of the document in its file, from 0
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	Obj        any // *corev1.Service, *appsv1.Deployment, ...
}

func (d *k8sDoc) String() string {
	return fmt.Sprintf("%s#%d %s/%s", d.File, d.Index, d.Kind, d.Name)
}

// k8sKustomization is the part of kustomization.yaml the manifests use,
// decoded strictly: a field kustomize knows but this struct does not is an
// error until the test learns what to check about it.
type k8sKustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// k8sBundle is everything under the manifest directory.
type k8sBundle struct {
	Dir           string
	Docs          []*k8sDoc
	Files         []string // every *.yaml/*.yml but kustomization.yaml, relative, sorted
	Kustomization *k8sKustomization
	README        string // README.md of the directory
}

// k8sLoad reads every *.yaml and *.yml under dir (recursively), splits the
// multi-document files and decodes each document strictly into its typed
// struct. All decoding errors are returned together.
func k8sLoad(dir string) (*k8sBundle, error) {
	b := &k8sBundle{Dir: dir}
	var (
		errs             []error
		sawKustomization bool
	)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if rel == "kustomization.yaml" {
			sawKustomization = true
			var k k8sKustomization
			if err := yaml.UnmarshalStrict(data, &k); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", rel, err))
			} else {
				b.Kustomization = &k
			}
			return nil
		}
		b.Files = append(b.Files, rel)
		docs, derrs := k8sDecodeFile(rel, data)
		b.Docs = append(b.Docs, docs...)
		errs = append(errs, derrs...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(b.Files)
	if readme, err := os.ReadFile(filepath.Join(dir, "README.md")); err == nil {
		b.README = string(readme)
	} else {
		errs = append(errs, fmt.Errorf("README.md: %w", err))
	}
	if !sawKustomization {
		errs = append(errs, errors.New("kustomization.yaml is missing"))
	}
	return b, errors.Join(errs...)
}

// k8sSplit splits a multi-document YAML file on its "---" lines and drops
// the documents that hold nothing but comments and blank lines.
func k8sSplit(data []byte) [][]byte {
	var (
		docs [][]byte
		cur  bytes.Buffer
		body bool
	)
	flush := func() {
		if body {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
		body = false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if t := strings.TrimRight(line, " \t"); t == "---" || strings.HasPrefix(t, "--- ") {
			flush()
			continue
		}
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			body = true
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

// k8sDecodeFile decodes every document of one file: the header (apiVersion,
// kind, metadata) leniently to pick the type, then the whole document
// strictly (unknown or duplicate fields are errors) into that type.
func k8sDecodeFile(file string, data []byte) ([]*k8sDoc, []error) {
	var (
		docs []*k8sDoc
		errs []error
	)
	for i, raw := range k8sSplit(data) {
		var head struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(raw, &head); err != nil {
			errs = append(errs, fmt.Errorf("%s#%d: %w", file, i, err))
			continue
		}
		newObj, ok := k8sKinds[head.APIVersion+"/"+head.Kind]
		if !ok {
			errs = append(errs, fmt.Errorf("%s#%d: unknown apiVersion/kind %q/%q (known: %s)", file, i, head.APIVersion, head.Kind, strings.Join(k8sKnownKinds(), ", ")))
			continue
		}
		obj := newObj()
		if err := yaml.UnmarshalStrict(raw, obj); err != nil {
			errs = append(errs, fmt.Errorf("%s#%d %s/%s: strict decoding: %w", file, i, head.Kind, head.Metadata.Name, err))
			continue
		}
		docs = append(docs, &k8sDoc{File: file, Index: i, APIVersion: head.APIVersion, Kind: head.Kind,
			Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, Obj: obj})
	}
	return docs, errs
}

func k8sKnownKinds() []string {
	ks := make([]string, 0, len(k8sKinds))
	for k := range k8sKinds {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// k8sObjects returns the documents' objects of type T, in file order.
func k8sObjects[T any](b *k8sBundle) []T {
	var out []T
	for _, d := range b.Docs {
		if o, ok := d.Obj.(T); ok {
			out = append(out, o)
		}
	}
	return out
}

// k8sWorkload is a Deployment or StatefulSet, seen through what the checks
// need: its pods.
type k8sWorkload struct {
	Kind        string
	Name        string
	Replicas    int32 // 1 when unset, as the API defaults it
	Selector    *metav1.LabelSelector
	Template    *corev1.PodTemplateSpec
	StatefulSet *appsv1.StatefulSet // nil for a Deployment
}

func (w *k8sWorkload) String() string { return w.Kind + "/" + w.Name }

func (b *k8sBundle) workloads() []*k8sWorkload {
	var ws []*k8sWorkload
	for _, d := range b.Docs {
		switch o := d.Obj.(type) {
		case *appsv1.Deployment:
			ws = append(ws, &k8sWorkload{Kind: "Deployment", Name: o.Name, Replicas: k8sReplicas(o.Spec.Replicas), Selector: o.Spec.Selector, Template: &o.Spec.Template})
		case *appsv1.StatefulSet:
			ws = append(ws, &k8sWorkload{Kind: "StatefulSet", Name: o.Name, Replicas: k8sReplicas(o.Spec.Replicas), Selector: o.Spec.Selector, Template: &o.Spec.Template, StatefulSet: o})
		}
	}
	return ws
}

func k8sReplicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// workload returns the workload of that kind and name, or nil.
func (b *k8sBundle) workload(kind, name string) *k8sWorkload {
	for _, w := range b.workloads() {
		if w.Kind == kind && w.Name == name {
			return w
		}
	}
	return nil
}

// selecting returns the workloads whose pod template labels the selector
// matches. An empty selector matches nothing here (it would select every
// pod of the namespace, which no Service or PDB of this stack means).
func (b *k8sBundle) selecting(sel map[string]string) []*k8sWorkload {
	if len(sel) == 0 {
		return nil
	}
	var out []*k8sWorkload
	for _, w := range b.workloads() {
		if k8sLabelsMatch(sel, w.Template.Labels) {
			out = append(out, w)
		}
	}
	return out
}

// selectingLS is selecting for a metav1.LabelSelector; match expressions
// are not used by these manifests and are refused.
func (b *k8sBundle) selectingLS(ls *metav1.LabelSelector) ([]*k8sWorkload, error) {
	if ls == nil {
		return nil, errors.New("no selector")
	}
	if len(ls.MatchExpressions) > 0 {
		return nil, errors.New("matchExpressions are not supported by the test; use matchLabels")
	}
	return b.selecting(ls.MatchLabels), nil
}

func k8sLabelsMatch(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// configMap returns the ConfigMap of that name, or nil.
func (b *k8sBundle) configMap(name string) *corev1.ConfigMap {
	for _, cm := range k8sObjects[*corev1.ConfigMap](b) {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}
