package apitest

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
)

// ReferenceCheck is Check done by kin-openapi's own response check
// (openapi3filter.ValidateResponse, which compiles each schema at each
// use): the tests hold Check to its verdicts.
func (v *Validator) ReferenceCheck(x Exchange) error {
	req, label := request(x)
	route, params, err := v.router.FindRoute(req)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		route = &routers.Route{Spec: v.doc, Path: req.URL.EscapedPath(), Method: req.Method, Operation: v.notFound}
	case errors.Is(err, routers.ErrMethodNotAllowed):
		route = &routers.Route{Spec: v.doc, Path: req.URL.EscapedPath(), Method: req.Method, Operation: v.notAllowed}
	case err != nil:
		return &Violation{Route: label, Status: x.Status, Err: fmt.Errorf("find the operation: %w", err)}
	default:
		label = route.Method + " " + route.Path
	}
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 x.Status,
		Header:                 x.Header,
		Options:                opts,
	}
	in.SetBodyBytes(x.Body)
	if req.Method == http.MethodHead {
		req.Method, opts.ExcludeResponseBody = http.MethodGet, true
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return &Violation{Route: label, Status: x.Status, Err: err}
	}
	return nil
}
