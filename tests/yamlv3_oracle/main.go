// The oracle for tests/unit/test_stack_yaml.py: decodes each YAML document the way the Pulumi CLI first reads a
// stack file (gopkg.in/yaml.v3 Unmarshal into an untyped value, sdk/go/common/workspace/loaders.go), then prints
// it as Go's encoding/json would hand an object config value to a program. Values JSON cannot carry are marked.
//
//	stdin:  a JSON array of documents (strings)
//	stdout: a JSON array of {"ok": value} or {"err": message}
//
// Build offline on Debian 12: apt-get install golang-go golang-gopkg-yaml.v3-dev (3.0.1, as pulumi/pulumi sdk/go.mod);
// GO111MODULE=off GOPATH=/usr/share/gocode go run tests/yamlv3_oracle/main.go < cases.json
package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

func walk(v any) any {
	switch v := v.(type) {
	case time.Time:
		return map[string]any{"$time": v.String()}
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return map[string]any{"$float": fmt.Sprint(v)}
		}
		return v
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			out[k] = walk(e)
		}
		return out
	case map[any]any:
		keys := []string{}
		for k := range v {
			keys = append(keys, fmt.Sprintf("%T %v", k, k))
		}
		return map[string]any{"$nonstring_keys": keys}
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = walk(e)
		}
		return out
	}
	return v
}

func main() {
	var docs []string
	if err := json.NewDecoder(os.Stdin).Decode(&docs); err != nil {
		panic(err)
	}
	results := make([]map[string]any, len(docs))
	for i, doc := range docs {
		func() {
			defer func() {
				if r := recover(); r != nil {
					results[i] = map[string]any{"err": fmt.Sprint("panic: ", r)}
				}
			}()
			var v any
			if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
				results[i] = map[string]any{"err": err.Error()}
				return
			}
			results[i] = map[string]any{"ok": walk(v)}
		}()
	}
	out, err := json.Marshal(results)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(out)
}
