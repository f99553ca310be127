// Package infra holds the deployment files (Kubernetes, OpenFaaS,
// monitoring) and the tests that decode them strictly. It is a module of
// its own so the Kubernetes API types stay out of the service's build.
package infra
