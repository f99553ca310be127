package infra

// A reader of CloudFormation/SAM templates as yaml.v3 nodes. The short-form
// intrinsics (!Ref, !Sub, !If, ...) stay node tags, the long forms
// ({Ref: x}, {"Fn::Sub": ...}) stay one-key mappings; cfnCallOf makes the
// two look alike, and cfnCheckReferences checks what every intrinsic names.

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// cfnTemplate is a parsed template: its sections by logical ID.
type cfnTemplate struct {
	src        string
	root       *yaml.Node
	Parameters map[string]*yaml.Node
	Conditions map[string]*yaml.Node
	Resources  map[string]*yaml.Node
	Outputs    map[string]*yaml.Node
	Mappings   map[string]*yaml.Node
	Rules      map[string]*yaml.Node
}

// cfnTemplatePath is the template the SAM tests read: ../template.yaml, or
// $IDGEN_SAM_TEMPLATE to try the checks on a deliberately broken copy.
func cfnTemplatePath() string {
	if p := os.Getenv("IDGEN_SAM_TEMPLATE"); p != "" {
		return p
	}
	return "../template.yaml"
}

func cfnLoad(t *testing.T) *cfnTemplate {
	t.Helper()
	src, err := os.ReadFile(cfnTemplatePath())
	if err != nil {
		t.Fatalf("read template: %v", err)
	}
	tpl, err := cfnParse(string(src))
	if err != nil {
		t.Fatalf("%s: %v", cfnTemplatePath(), err)
	}
	return tpl
}

func cfnParse(src string) (*cfnTemplate, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("template is not a YAML mapping")
	}
	root := doc.Content[0]
	tpl := &cfnTemplate{src: src, root: root}
	sections := map[string]*map[string]*yaml.Node{
		"Parameters": &tpl.Parameters, "Conditions": &tpl.Conditions, "Resources": &tpl.Resources,
		"Outputs": &tpl.Outputs, "Mappings": &tpl.Mappings, "Rules": &tpl.Rules,
	}
	known := map[string]bool{"AWSTemplateFormatVersion": true, "Transform": true, "Description": true, "Metadata": true, "Globals": true}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i].Value, cfnDeref(root.Content[i+1])
		dst, ok := sections[key]
		if !ok {
			if !known[key] {
				return nil, fmt.Errorf("unknown top-level section %q", key)
			}
			continue
		}
		if val.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("section %s is not a mapping", key)
		}
		*dst = map[string]*yaml.Node{}
		for j := 0; j+1 < len(val.Content); j += 2 {
			if _, dup := (*dst)[val.Content[j].Value]; dup {
				return nil, fmt.Errorf("%s.%s defined twice", key, val.Content[j].Value)
			}
			(*dst)[val.Content[j].Value] = cfnDeref(val.Content[j+1])
		}
	}
	for _, sec := range sections {
		if *sec == nil {
			*sec = map[string]*yaml.Node{}
		}
	}
	if len(tpl.Resources) == 0 {
		return nil, fmt.Errorf("no Resources")
	}
	return tpl, nil
}

// cfnDeref follows YAML aliases.
func cfnDeref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// cfnGet returns the value of key in mapping n (nil when absent).
func cfnGet(n *yaml.Node, key string) *yaml.Node {
	n = cfnDeref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return cfnDeref(n.Content[i+1])
		}
	}
	return nil
}

// cfnPath walks nested mapping keys.
func cfnPath(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		n = cfnGet(n, k)
	}
	return n
}

// cfnScalar returns a plain (untagged or !!str/!!int/!!bool) scalar's value.
func cfnScalar(n *yaml.Node) (string, bool) {
	n = cfnDeref(n)
	if n == nil || n.Kind != yaml.ScalarNode || strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		return "", false
	}
	return n.Value, true
}

func cfnType(r *yaml.Node) string { v, _ := cfnScalar(cfnGet(r, "Type")); return v }

// cfnResourcesOfType lists the logical IDs of one resource type, sorted.
func (t *cfnTemplate) cfnResourcesOfType(typ string) []string {
	var ids []string
	for id, r := range t.Resources {
		if cfnType(r) == typ {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Short tags and the long-form functions they stand for.
var cfnShortTags = map[string]string{
	"!Ref": "Ref", "!Condition": "Condition", "!GetAtt": "Fn::GetAtt", "!Sub": "Fn::Sub",
	"!If": "Fn::If", "!Equals": "Fn::Equals", "!Not": "Fn::Not", "!And": "Fn::And", "!Or": "Fn::Or",
	"!Select": "Fn::Select", "!Join": "Fn::Join", "!Split": "Fn::Split", "!FindInMap": "Fn::FindInMap",
	"!GetAZs": "Fn::GetAZs", "!ImportValue": "Fn::ImportValue", "!Base64": "Fn::Base64", "!Cidr": "Fn::Cidr",
}

var cfnLongForms = func() map[string]bool {
	m := map[string]bool{}
	for _, fn := range cfnShortTags {
		m[fn] = true
	}
	return m
}()

// Condition functions: only in Conditions (and Rules, which have their own).
var cfnConditionFns = map[string]bool{"Fn::Equals": true, "Fn::Not": true, "Fn::And": true, "Fn::Or": true, "Condition": true}

var cfnPseudo = map[string]bool{
	"AWS::AccountId": true, "AWS::NotificationARNs": true, "AWS::NoValue": true, "AWS::Partition": true,
	"AWS::Region": true, "AWS::StackId": true, "AWS::StackName": true, "AWS::URLSuffix": true,
}

// cfnAttrs lists the GetAtt attributes of the resource types this project
// uses (after the SAM transform); other types are not checked.
var cfnAttrs = map[string][]string{
	"AWS::SQS::Queue":           {"Arn", "QueueName", "QueueUrl"},
	"AWS::Logs::LogGroup":       {"Arn"},
	"AWS::Serverless::Function": {"Arn"},
	"AWS::Lambda::Function":     {"Arn", "SnapStartResponse", "SnapStartResponse.ApplyOn", "SnapStartResponse.OptimizationStatus"},
	"AWS::Events::Rule":         {"Arn"},
	"AWS::SNS::Topic":           {"TopicArn", "TopicName"},
	"AWS::CloudWatch::Alarm":    {"Arn"},
	"AWS::Serverless::HttpApi":  {"ApiEndpoint", "ApiId"},
}

// cfnCall is one intrinsic function, short or long form.
type cfnCall struct {
	Fn   string     // long name: Ref, Condition, Fn::Sub, ...
	Arg  *yaml.Node // its argument (for a short form: the tagged node itself)
	Path string
}

// cfnCallOf reports whether n is an intrinsic; err for a tag or Fn:: this
// reader does not know.
func cfnCallOf(n *yaml.Node, path string) (cfnCall, bool, error) {
	n = cfnDeref(n)
	if n == nil {
		return cfnCall{}, false, nil
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		fn, ok := cfnShortTags[n.Tag]
		if !ok {
			return cfnCall{}, false, fmt.Errorf("%s: unknown tag %s", path, n.Tag)
		}
		return cfnCall{Fn: fn, Arg: n, Path: path}, true, nil
	}
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 {
		key, val := n.Content[0].Value, cfnDeref(n.Content[1])
		switch {
		case key == "Ref", key == "Condition" && val.Kind == yaml.ScalarNode:
			return cfnCall{Fn: key, Arg: val, Path: path}, true, nil
		case strings.HasPrefix(key, "Fn::"):
			if !cfnLongForms[key] {
				return cfnCall{}, false, fmt.Errorf("%s: unknown function %s", path, key)
			}
			return cfnCall{Fn: key, Arg: val, Path: path}, true, nil
		}
	}
	return cfnCall{}, false, nil
}

// cfnWalk visits every intrinsic under n, outermost first; problems are
// tags or functions it does not know.
func cfnWalk(n *yaml.Node, path string, visit func(cfnCall)) []string {
	var problems []string
	var walk func(n *yaml.Node, path string)
	children := func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], path+"."+n.Content[i].Value)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk = func(n *yaml.Node, path string) {
		n = cfnDeref(n)
		if n == nil {
			return
		}
		c, ok, err := cfnCallOf(n, path)
		if err != nil {
			problems = append(problems, err.Error())
			return
		}
		if ok {
			visit(c)
			children(cfnDeref(c.Arg), path+"<"+c.Fn+">")
			return
		}
		children(n, path)
	}
	walk(n, path)
	return problems
}

// cfnIs returns the argument of n when n is a call of fn.
func cfnIs(n *yaml.Node, fn string) (*yaml.Node, bool) {
	c, ok, _ := cfnCallOf(n, "")
	if !ok || c.Fn != fn {
		return nil, false
	}
	return cfnDeref(c.Arg), true
}

// cfnRef returns the name a Ref names.
func cfnRef(n *yaml.Node) (string, bool) {
	arg, ok := cfnIs(n, "Ref")
	if !ok || arg.Kind != yaml.ScalarNode {
		return "", false
	}
	return arg.Value, true
}

// cfnGetAtt returns the resource and attribute of a GetAtt (either form).
func cfnGetAtt(n *yaml.Node) (res, attr string, ok bool) {
	arg, ok := cfnIs(n, "Fn::GetAtt")
	if !ok {
		return "", "", false
	}
	return cfnGetAttArg(arg)
}

func cfnGetAttArg(arg *yaml.Node) (res, attr string, ok bool) {
	switch arg.Kind {
	case yaml.ScalarNode:
		res, attr, ok = strings.Cut(arg.Value, ".")
		return res, attr, ok && res != "" && attr != ""
	case yaml.SequenceNode:
		if len(arg.Content) != 2 {
			return "", "", false
		}
		r, ok1 := cfnScalar(arg.Content[0])
		a, ok2 := cfnScalar(arg.Content[1])
		return r, a, ok1 && ok2 && r != "" && a != ""
	}
	return "", "", false
}

// cfnSubVars returns the ${...} variables of a Fn::Sub string; ${!x} is a
// literal "${x}".
func cfnSubVars(s string) ([]string, error) {
	var vars []string
	for i := 0; ; {
		j := strings.Index(s[i:], "${")
		if j < 0 {
			return vars, nil
		}
		j += i
		k := strings.IndexByte(s[j:], '}')
		if k < 0 {
			return vars, fmt.Errorf("unterminated ${ in %q", s)
		}
		k += j
		name := s[j+2 : k]
		i = k + 1
		if strings.HasPrefix(name, "!") {
			continue
		}
		name = strings.TrimSpace(name)
		if name == "" || strings.ContainsAny(name, "${ ") {
			return vars, fmt.Errorf("bad variable ${%s} in %q", name, s)
		}
		vars = append(vars, name)
	}
}

// cfnBranches is every value n can take: the branches of Fn::If, nothing
// for AWS::NoValue, n itself otherwise.
func cfnBranches(n *yaml.Node) []*yaml.Node {
	if n = cfnDeref(n); n == nil {
		return nil
	}
	if arg, ok := cfnIs(n, "Fn::If"); ok && arg.Kind == yaml.SequenceNode && len(arg.Content) == 3 {
		return append(cfnBranches(arg.Content[1]), cfnBranches(arg.Content[2])...)
	}
	if name, ok := cfnRef(n); ok && name == "AWS::NoValue" {
		return nil
	}
	return []*yaml.Node{n}
}

// cfnParam returns the parameter a Ref names, if it names one.
func (t *cfnTemplate) cfnParam(n *yaml.Node) (string, *yaml.Node, bool) {
	name, ok := cfnRef(n)
	if !ok {
		return "", nil, false
	}
	p, ok := t.Parameters[name]
	return name, p, ok
}

// cfnValue is n as a literal, or the Default of the parameter it Refs.
func (t *cfnTemplate) cfnValue(n *yaml.Node) (string, bool) {
	if v, ok := cfnScalar(n); ok {
		return v, true
	}
	if _, p, ok := t.cfnParam(n); ok {
		return cfnScalar(cfnGet(p, "Default"))
	}
	return "", false
}

// cfnInt is n as an integer: a literal, or its parameter's Default.
func (t *cfnTemplate) cfnInt(n *yaml.Node) (int, bool) {
	v, ok := t.cfnValue(n)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(v)
	return i, err == nil
}

// cfnMax is the largest value n can take: a literal, or its parameter's
// MaxValue (false when unbounded).
func (t *cfnTemplate) cfnMax(n *yaml.Node) (int, bool) {
	if v, ok := cfnScalar(n); ok {
		i, err := strconv.Atoi(v)
		return i, err == nil
	}
	if _, p, ok := t.cfnParam(n); ok {
		v, ok := cfnScalar(cfnGet(p, "MaxValue"))
		if !ok {
			return 0, false
		}
		i, err := strconv.Atoi(v)
		return i, err == nil
	}
	return 0, false
}

// cfnCheckReferences checks every intrinsic of the template: it is one this
// reader knows, its shape is right, and every name it uses resolves (Ref,
// GetAtt and Sub variables to a parameter, resource or pseudo parameter,
// conditions to Conditions, FindInMap to Mappings). It also reports
// parameters and conditions defined but never used, DependsOn targets that
// do not exist, and condition functions outside Conditions/Rules.
func cfnCheckReferences(t *cfnTemplate) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	usedParams, usedConds := map[string]bool{}, map[string]bool{}

	refOK := func(name, path string, rulesOnly bool) {
		switch {
		case cfnPseudo[name]:
		case t.Parameters[name] != nil:
			usedParams[name] = true
		case t.Resources[name] != nil && !rulesOnly:
		default:
			bad("%s: %q is no parameter, resource or pseudo parameter", path, name)
		}
	}
	getAttOK := func(res, attr, path string) {
		r := t.Resources[res]
		if r == nil {
			bad("%s: GetAtt names no resource %q", path, res)
			return
		}
		if attrs, known := cfnAttrs[cfnType(r)]; known {
			for _, a := range attrs {
				if a == attr {
					return
				}
			}
			bad("%s: %s (%s) has no attribute %q", path, res, cfnType(r), attr)
		}
	}
	condOK := func(name, path string) {
		usedConds[name] = true
		if t.Conditions[name] == nil {
			bad("%s: condition %q is not defined", path, name)
		}
	}
	seqLen := func(c cfnCall, lo, hi int) (*yaml.Node, bool) {
		arg := cfnDeref(c.Arg)
		if arg.Kind != yaml.SequenceNode || len(arg.Content) < lo || len(arg.Content) > hi {
			bad("%s: %s wants a list of %d..%d", c.Path, c.Fn, lo, hi)
			return nil, false
		}
		return arg, true
	}

	visitor := func(inConditions, inRules bool) func(cfnCall) {
		return func(c cfnCall) {
			arg := cfnDeref(c.Arg)
			if cfnConditionFns[c.Fn] && !inConditions && !(inRules && c.Fn != "Condition") {
				bad("%s: %s outside Conditions", c.Path, c.Fn)
			}
			switch c.Fn {
			case "Ref":
				if arg.Kind != yaml.ScalarNode || arg.Value == "" {
					bad("%s: Ref wants a name", c.Path)
					return
				}
				refOK(arg.Value, c.Path, inRules)
			case "Condition":
				if arg.Kind != yaml.ScalarNode {
					bad("%s: Condition wants a name", c.Path)
					return
				}
				condOK(arg.Value, c.Path)
			case "Fn::GetAtt":
				res, attr, ok := cfnGetAttArg(arg)
				if !ok {
					bad("%s: GetAtt wants Resource.Attribute or [Resource, Attribute]", c.Path)
					return
				}
				getAttOK(res, attr, c.Path)
			case "Fn::Sub":
				str, locals := arg, map[string]bool{}
				if arg.Kind == yaml.SequenceNode {
					if len(arg.Content) != 2 || cfnDeref(arg.Content[1]).Kind != yaml.MappingNode {
						bad("%s: Sub list form wants [string, {variables}]", c.Path)
						return
					}
					str = cfnDeref(arg.Content[0])
					m := cfnDeref(arg.Content[1])
					for i := 0; i < len(m.Content); i += 2 {
						locals[m.Content[i].Value] = true
					}
				}
				if str.Kind != yaml.ScalarNode {
					bad("%s: Sub wants a string", c.Path)
					return
				}
				vars, err := cfnSubVars(str.Value)
				if err != nil {
					bad("%s: %v", c.Path, err)
				}
				for _, v := range vars {
					switch res, attr, dotted := strings.Cut(v, "."); {
					case locals[v]:
					case dotted && !cfnPseudo[v]:
						getAttOK(res, attr, c.Path+" ${"+v+"}")
					default:
						refOK(v, c.Path+" ${"+v+"}", inRules)
					}
				}
			case "Fn::If":
				if a, ok := seqLen(c, 3, 3); ok {
					name, ok := cfnScalar(a.Content[0])
					if !ok {
						bad("%s: If wants a condition name first", c.Path)
						return
					}
					condOK(name, c.Path)
				}
			case "Fn::Equals", "Fn::Select", "Fn::Split":
				seqLen(c, 2, 2)
			case "Fn::Join":
				if a, ok := seqLen(c, 2, 2); ok {
					if _, ok := cfnScalar(a.Content[0]); !ok {
						bad("%s: Join wants a delimiter string first", c.Path)
					}
				}
			case "Fn::Not":
				seqLen(c, 1, 1)
			case "Fn::And", "Fn::Or":
				seqLen(c, 2, 10)
			case "Fn::Cidr":
				seqLen(c, 3, 3)
			case "Fn::FindInMap":
				if a, ok := seqLen(c, 3, 3); ok {
					m, ok := cfnScalar(a.Content[0])
					if !ok {
						return // a Ref, checked as such
					}
					top := t.Mappings[m]
					if top == nil {
						bad("%s: FindInMap names no mapping %q", c.Path, m)
						return
					}
					if k1, ok := cfnScalar(a.Content[1]); ok {
						second := cfnGet(top, k1)
						if second == nil {
							bad("%s: mapping %s has no key %q", c.Path, m, k1)
						} else if k2, ok := cfnScalar(a.Content[2]); ok && cfnGet(second, k2) == nil {
							bad("%s: mapping %s.%s has no key %q", c.Path, m, k1, k2)
						}
					}
				}
			case "Fn::GetAZs", "Fn::ImportValue", "Fn::Base64":
				// Any value; its own intrinsics are walked.
			}
		}
	}

	for name, cond := range t.Conditions {
		problems = append(problems, cfnWalk(cond, "Conditions."+name, visitor(true, false))...)
	}
	for name, rule := range t.Rules {
		problems = append(problems, cfnWalk(rule, "Rules."+name, visitor(false, true))...)
	}
	for id, r := range t.Resources {
		path := "Resources." + id
		if cfnType(r) == "" {
			bad("%s: no Type", path)
		}
		if c := cfnGet(r, "Condition"); c != nil {
			name, ok := cfnScalar(c)
			if !ok {
				bad("%s.Condition: wants a condition name", path)
			} else {
				condOK(name, path+".Condition")
			}
		}
		if d := cfnGet(r, "DependsOn"); d != nil {
			deps := []*yaml.Node{d}
			if d.Kind == yaml.SequenceNode {
				deps = d.Content
			}
			for _, dep := range deps {
				if name, _ := cfnScalar(dep); t.Resources[name] == nil {
					bad("%s.DependsOn: no resource %q", path, name)
				}
			}
		}
		for i := 0; i+1 < len(r.Content); i += 2 {
			if k := r.Content[i].Value; k != "Condition" && k != "DependsOn" {
				problems = append(problems, cfnWalk(r.Content[i+1], path+"."+k, visitor(false, false))...)
			}
		}
	}
	for name, o := range t.Outputs {
		path := "Outputs." + name
		if c := cfnGet(o, "Condition"); c != nil {
			if n, ok := cfnScalar(c); ok {
				condOK(n, path+".Condition")
			} else {
				bad("%s.Condition: wants a condition name", path)
			}
		}
		if cfnGet(o, "Value") == nil {
			bad("%s: no Value", path)
		}
		for i := 0; i+1 < len(o.Content); i += 2 {
			if o.Content[i].Value != "Condition" {
				problems = append(problems, cfnWalk(o.Content[i+1], path+"."+o.Content[i].Value, visitor(false, false))...)
			}
		}
	}
	for name := range t.Parameters {
		if !usedParams[name] {
			bad("Parameters.%s: defined but never used", name)
		}
	}
	for name := range t.Conditions {
		if !usedConds[name] {
			bad("Conditions.%s: defined but never used", name)
		}
	}
	sort.Strings(problems)
	return problems
}
