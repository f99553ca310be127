// Package api holds the contract of idgen's HTTP API: openapi.json, an
// OpenAPI 3.1 document embedded in the binary and served at
// GET /openapi.json.
//
// Invariants: the document describes every route functions/httpapi serves
// and no other (functions/httpapi's TestRoutesAreDocumented compares it with
// httpapi.Routes, the table the router dispatches on), every status an
// operation answers, and every answer's headers and body; the error code
// enum and the codes of each error answer are those of
// functions/httpapi/errors.go (TestErrorCodesAreDocumented). Every response
// the in-process tests of functions/httpapi and the end-to-end tests of the
// binary receive is validated against it (package apitest).
//
// The document is written for OpenAPI 3.1 with the JSON Schema 2020-12
// dialect (type arrays, const), which kin-openapi's validator (v0.153.0,
// used by apitest) supports: it validates bodies of 3.1 documents with a
// JSON Schema 2020-12 validator. It is JSON so that the binary needs no
// YAML library.
package api

import _ "embed"

//go:embed openapi.json
var document string

// Document returns the OpenAPI document (JSON), a fresh copy on each call.
func Document() []byte { return []byte(document) }
