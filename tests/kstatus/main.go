// Command kstatus-check prints the status that kstatus computes for
// Kubernetes objects: the same library (sigs.k8s.io/cli-utils
// pkg/kstatus/status) that Flux, kpt and the cli-utils applier use to decide
// whether what they applied is healthy.
//
// Usage:
//
//	kstatus-check [-o text|json] [FILE...]
//
// Each FILE (or stdin when there is none, or when FILE is "-") holds one or
// more objects as YAML or JSON; YAML documents are separated by "---", and a
// List (what `kubectl get -o yaml` prints for several objects) is expanded
// into its items. For every object, in input order, it prints one line:
//
//	KIND<TAB>NAMESPACE/NAME<TAB>STATUS<TAB>MESSAGE
//
// where STATUS is InProgress, Current, Failed, Terminating or Unknown, or
// with -o json one JSON object per line with the conditions kstatus derived.
// The exit code is 0 unless an input could not be read or parsed.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Namespace  string             `json:"namespace,omitempty"`
	Name       string             `json:"name"`
	Status     string             `json:"status"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions,omitempty"`
}

func main() {
	output := flag.String("o", "text", "output format: text (tab-separated) or json (one object per line)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-o text|json] [FILE...]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if *output != "text" && *output != "json" {
		fmt.Fprintf(os.Stderr, "kstatus-check: unknown output format %q (text or json)\n", *output)
		os.Exit(2)
	}

	inputs := flag.Args()
	if len(inputs) == 0 {
		inputs = []string{"-"}
	}

	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	failed := false
	for _, in := range inputs {
		objs, err := read(in)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus-check: %s: %v\n", in, err)
			failed = true
		}
		for _, u := range objs {
			v := compute(u)
			if *output == "json" {
				line, _ := json.Marshal(v)
				fmt.Fprintf(out, "%s\n", line)
				continue
			}
			fmt.Fprintf(out, "%s\t%s\t%s\t%s\n", v.Kind, key(v), v.Status, oneLine(v.Message))
		}
	}
	if failed {
		out.Flush()
		os.Exit(1)
	}
}

// read decodes every object in one input, expanding Lists.
func read(path string) ([]*unstructured.Unstructured, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(r), 4096)
	var objs []*unstructured.Unstructured
	for n := 1; ; n++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return objs, fmt.Errorf("document %d: %w", n, err)
		}
		if t := strings.TrimSpace(string(raw)); t == "" || t == "null" || t == "{}" {
			continue // an empty YAML document
		}
		// The unstructured JSON scheme keeps integers as int64, as the API
		// server's own decoding does, and turns a List into its items.
		obj, _, err := unstructured.UnstructuredJSONScheme.Decode(raw, nil, nil)
		if err != nil {
			return objs, fmt.Errorf("document %d: %w", n, err)
		}
		switch o := obj.(type) {
		case *unstructured.UnstructuredList:
			for i := range o.Items {
				objs = append(objs, &o.Items[i])
			}
		case *unstructured.Unstructured:
			objs = append(objs, o)
		default:
			return objs, fmt.Errorf("document %d: unexpected %T", n, obj)
		}
	}
}

func compute(u *unstructured.Unstructured) verdict {
	v := verdict{
		APIVersion: u.GetAPIVersion(),
		Kind:       u.GetKind(),
		Namespace:  u.GetNamespace(),
		Name:       u.GetName(),
	}
	res, err := status.Compute(u)
	if err != nil {
		v.Status = string(status.UnknownStatus)
		v.Message = "kstatus could not compute a status: " + err.Error()
		return v
	}
	v.Status = string(res.Status)
	v.Message = res.Message
	v.Conditions = res.Conditions
	return v
}

func key(v verdict) string {
	if v.Namespace == "" {
		return v.Name
	}
	return v.Namespace + "/" + v.Name
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
