package api

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// loadOpenAPI parses and resolves api/openapi.json with kin-openapi.
func loadOpenAPI(t testing.TB) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPIDocument)
	if err != nil {
		t.Fatalf("api/openapi.json does not load: %v", err)
	}
	return doc
}

// TestOpenAPIDocumentValidates checks the document against the OpenAPI 3.1
// rules kin-openapi enforces (structure, references, JSON Schema 2020-12
// schemas, and every example against its schema).
func TestOpenAPIDocumentValidates(t *testing.T) {
	doc := loadOpenAPI(t)
	if doc.OpenAPI != "3.1.0" || !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi = %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("api/openapi.json is not a valid OpenAPI 3.1 document: %v", err)
	}
}

// TestOpenAPIServed checks that both listeners serve the embedded document
// without a token.
func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name string
		h    http.Handler
	}{{"gateway", e.srv.Handler()}, {"operator", e.srv.OpsHandler()}} {
		t.Run(c.name, func(t *testing.T) {
			w := newRecorder()
			c.h.ServeHTTP(w, mustRequest(t, http.MethodGet, "/api/v1/openapi.json"))
			if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("GET /api/v1/openapi.json = %d %q, want 200 application/json", w.Code, w.Header().Get("Content-Type"))
			}
			if !bytes.Equal(w.Body.Bytes(), openAPIDocument) {
				t.Fatalf("served document differs from api/openapi.json (%d bytes, want %d)", w.Body.Len(), len(openAPIDocument))
			}
		})
	}
}
