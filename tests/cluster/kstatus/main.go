// kstatus prints what sigs.k8s.io/cli-utils' kstatus (the library Flux, kpt and Config Sync
// wait with) computes for a Kubernetes object: the end-to-end tests check eventspan's
// TraceSession status against the real rules, not a re-implementation of them.
//
// It reads one object as JSON on stdin (`kubectl get -o json`) and prints one JSON line:
// {"status":"Current","message":"..."}. Exit status 1 on unreadable input.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// Kubernetes' own decoder: integers stay int64, as kstatus reads them (encoding/json
	// would make them float64, which kstatus refuses).
	var object unstructured.Unstructured
	if err := object.UnmarshalJSON(input); err != nil {
		fail(fmt.Errorf("stdin is not a Kubernetes object: %w", err))
	}
	result, err := status.Compute(&object)
	if err != nil {
		fail(err)
	}
	out, err := json.Marshal(map[string]string{
		"status":  result.Status.String(),
		"message": result.Message,
	})
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(1)
}
