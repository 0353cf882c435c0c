package api

import (
	_ "embed"
	"net/http"
)

// openAPIDocument is the OpenAPI 3.1 contract of this API (api/openapi.json),
// kept beside the handlers it describes and checked against the router and
// the live server by openapi_test.go.
//
//go:embed openapi.json
var openAPIDocument []byte

// handleOpenAPI serves the document without a token, like /health: it
// describes the API, it holds no user data.
func handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDocument)
}
