// Package crds makes the Prometheus Operator's API types part of this module, so that
// controller-gen (this module's tool) can generate their CRDs from them, as that project does
// for its releases. The chart's ServiceMonitor is validated against the result.
package crds

import _ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
