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

// eachMediaType calls fn for every request and response body of every
// operation, named "operationId request|response <status> <media type>".
func eachMediaType(doc *openapi3.T, fn func(where string, mt *openapi3.MediaType)) {
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if rb := op.RequestBody; rb != nil && rb.Value != nil {
				for ct, mt := range rb.Value.Content {
					fn(op.OperationID+" request "+ct, mt)
				}
			}
			for status, resp := range op.Responses.Map() {
				if resp.Value == nil {
					continue
				}
				for ct, mt := range resp.Value.Content {
					fn(op.OperationID+" response "+status+" "+ct, mt)
				}
			}
		}
	}
}

// TestOpenAPIExamplesMatchSchemas validates every body example, one by
// one, against its schema with JSON Schema 2020-12, so a failure names the
// operation, the example and the field.
func TestOpenAPIExamplesMatchSchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	n := 0
	eachMediaType(doc, func(where string, mt *openapi3.MediaType) {
		if mt.Schema == nil || mt.Schema.Value == nil {
			t.Errorf("%s has no schema", where)
			return
		}
		examples := map[string]any{}
		if mt.Example != nil {
			examples["example"] = mt.Example
		}
		for name, ex := range mt.Examples {
			if ex.Value == nil {
				t.Errorf("%s example %q does not resolve", where, name)
				continue
			}
			examples[name] = ex.Value.Value
		}
		for name, v := range examples {
			n++
			if err := mt.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
				t.Errorf("%s example %q does not match its schema: %v", where, name, err)
			}
		}
	})
	if n < 40 {
		t.Errorf("validated only %d examples; the document should carry one per body", n)
	}
}
