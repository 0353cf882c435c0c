package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"
)

// Listeners an operation is served on (x-listeners; absent: the gateway).
const (
	listenerPublic   = "public"
	listenerOperator = "operator"
)

// documentedOp is one operation of the document as the route check sees it.
type documentedOp struct {
	id        string
	listeners []string
	// pending is x-pending-merge: documented from a branch that is not
	// merged here yet, so its absence from the router is expected.
	pending bool
}

// documentedOps maps "METHOD /path/{param}" to the operation.
func documentedOps(doc *openapi3.T) map[string]documentedOp {
	out := map[string]documentedOp{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			d := documentedOp{id: op.OperationID, listeners: []string{listenerPublic}}
			if v, ok := op.Extensions["x-listeners"].([]any); ok {
				d.listeners = nil
				for _, l := range v {
					d.listeners = append(d.listeners, fmt.Sprint(l))
				}
			}
			d.pending, _ = op.Extensions["x-pending-merge"].(bool)
			out[method+" "+path] = d
		}
	}
	return out
}

// routedOps walks a chi router and returns "METHOD /path/{param}" for every
// route. chi reports a subrouter's root as "/sessions/"; clients call
// "/sessions", and chi serves both, so the trailing slash is dropped.
func routedOps(t *testing.T, h http.Handler) map[string]bool {
	t.Helper()
	routes, ok := h.(chi.Routes)
	if !ok {
		t.Fatalf("handler %T is not a chi router", h)
	}
	out := map[string]bool{}
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if len(route) > 1 {
			route = strings.TrimSuffix(route, "/")
		}
		out[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatalf("walk routes: %v", err)
	}
	return out
}

// TestOpenAPICoversRouter checks, for each listener, that every route of
// its chi router is documented with the same method and path template, and
// that every operation documented for it is routed (unless it is marked
// x-pending-merge). Once the branch that adds a pending operation is
// merged, the mark must go, so that the live flow has to reach it.
func TestOpenAPICoversRouter(t *testing.T) {
	doc := loadOpenAPI(t)
	docOps := documentedOps(doc)
	e := newEnv(t)
	for _, l := range []struct {
		name string
		h    http.Handler
	}{{listenerPublic, e.srv.Handler()}, {listenerOperator, e.srv.OpsHandler()}} {
		t.Run(l.name, func(t *testing.T) {
			routed := routedOps(t, l.h)
			var undocumented, unrouted, merged []string
			for r := range routed {
				d, ok := docOps[r]
				switch {
				case !ok || !slices.Contains(d.listeners, l.name):
					undocumented = append(undocumented, r)
				case d.pending:
					merged = append(merged, r+" ("+d.id+")")
				}
			}
			for r, d := range docOps {
				if slices.Contains(d.listeners, l.name) && !routed[r] && !d.pending {
					unrouted = append(unrouted, r+" ("+d.id+")")
				}
			}
			if len(undocumented)+len(unrouted)+len(merged) > 0 {
				slices.Sort(undocumented)
				slices.Sort(unrouted)
				slices.Sort(merged)
				var b strings.Builder
				fmt.Fprintf(&b, "the %s router and api/openapi.json disagree:\n", l.name)
				fmt.Fprintf(&b, "  routed but not documented (%d):\n", len(undocumented))
				for _, r := range undocumented {
					fmt.Fprintf(&b, "    %s\n", r)
				}
				fmt.Fprintf(&b, "  documented but not routed (%d):\n", len(unrouted))
				for _, r := range unrouted {
					fmt.Fprintf(&b, "    %s\n", r)
				}
				fmt.Fprintf(&b, "  routed but still marked x-pending-merge: remove the mark, and reach them in TestOpenAPILiveFlow (%d):\n", len(merged))
				for _, r := range merged {
					fmt.Fprintf(&b, "    %s\n", r)
				}
				t.Fatal(b.String())
			}
			if len(routed) < 5 {
				t.Fatalf("walked only %d routes on the %s router: %v", len(routed), l.name, routed)
			}
		})
	}
}

// TestOpenAPIOperationsWellFormed checks what a client generator relies on:
// every operation has a unique operationId, and every JSON body (request
// or response) has at least one example.
func TestOpenAPIOperationsWellFormed(t *testing.T) {
	doc := loadOpenAPI(t)
	seen := map[string]string{}
	for key, d := range documentedOps(doc) {
		if d.id == "" {
			t.Errorf("%s has no operationId", key)
		} else if prev, dup := seen[d.id]; dup {
			t.Errorf("operationId %q is used by %s and %s", d.id, prev, key)
		}
		seen[d.id] = key
	}
	eachMediaType(doc, func(where string, mt *openapi3.MediaType) {
		if strings.HasSuffix(where, "application/x-tar") {
			return // a tar archive has no useful example in JSON
		}
		if mt.Example == nil && len(mt.Examples) == 0 {
			t.Errorf("%s has no example", where)
		}
	})
}
