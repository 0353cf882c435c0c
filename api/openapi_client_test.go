package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

func init() {
	// Tar bodies are bytes to the validator, as octet-stream is.
	openapi3filter.RegisterBodyDecoder("application/x-tar", openapi3filter.FileBodyDecoder)
}

// contractClient sends requests to a live server and checks every request
// and every answer against api/openapi.json with kin-openapi's
// openapi3filter. It records which operations it exercised.
type contractClient struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	client *http.Client
	seen   map[string]bool
}

// newContractClient routes by the document's paths on the given base URLs
// (the gateway and, optionally, the operator listener).
func newContractClient(t *testing.T, client *http.Client, bases ...string) *contractClient {
	t.Helper()
	doc := loadOpenAPI(t)
	doc.Servers = nil
	for _, b := range bases {
		doc.Servers = append(doc.Servers, &openapi3.Server{URL: b})
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route by api/openapi.json: %v", err)
	}
	return &contractClient{t: t, doc: doc, router: router, client: client, seen: map[string]bool{}}
}

// contractCall is one request of a flow and what must come of it.
type contractCall struct {
	op     string // the operationId the request must reach
	method string
	url    string // base URL + path and query
	token  string
	// body is nil, []byte (sent as ctype) or a value sent as JSON.
	body    any
	ctype   string
	headers []string
	status  int
	// invalid: the document itself must refuse this request (error paths
	// that the schema can express); the server's answer is still checked.
	invalid bool
	// firstLine reads one non-empty line of a stream and hangs up (a
	// stream that never ends by itself).
	firstLine bool
}

// do sends c and fails the test, naming the operation, unless the request
// and the answer match the document and the status is the expected one.
func (cc *contractClient) do(c contractCall) result {
	t := cc.t
	t.Helper()
	var raw []byte
	ctype := c.ctype
	switch b := c.body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			t.Fatalf("%s: encode body: %v", c.op, err)
		}
		if ctype == "" {
			ctype = "application/json"
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	newReq := func() *http.Request {
		var rd io.Reader
		if c.body != nil {
			rd = bytes.NewReader(raw)
		}
		req, err := http.NewRequestWithContext(ctx, c.method, c.url, rd)
		if err != nil {
			t.Fatalf("%s: new request: %v", c.op, err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		for i := 0; i+1 < len(c.headers); i += 2 {
			req.Header.Set(c.headers[i], c.headers[i+1])
		}
		return req
	}

	req := newReq()
	route, params, err := cc.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s: no operation in api/openapi.json: %v", c.method, c.url, err)
	}
	if route.Operation.OperationID != c.op {
		t.Fatalf("%s %s reached operation %q in api/openapi.json, want %q", c.method, c.url, route.Operation.OperationID, c.op)
	}
	cc.seen[c.op] = true
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: bearerPresent}}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	switch {
	case c.invalid && reqErr == nil:
		t.Errorf("%s: api/openapi.json accepts a request the test sends as invalid (%s %s)", c.op, c.method, c.url)
	case !c.invalid && reqErr != nil:
		t.Errorf("%s: request does not match api/openapi.json: %v", c.op, reqErr)
	}

	resp, err := cc.client.Do(newReq())
	if err != nil {
		t.Fatalf("%s: %s %s: %v", c.op, c.method, c.url, err)
	}
	defer resp.Body.Close()
	var body []byte
	if c.firstLine {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
				body = append(line, '\n')
				break
			}
		}
		cancel()
	} else if body, err = io.ReadAll(resp.Body); err != nil {
		t.Fatalf("%s: read answer: %v", c.op, err)
	}
	r := result{status: resp.StatusCode, header: resp.Header, raw: body}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &r.body); err != nil {
			t.Fatalf("%s: answer is not a JSON object: %v: %s", c.op, err, body)
		}
	}
	if resp.StatusCode != c.status {
		t.Fatalf("%s: status %d, want %d; body: %.300s", c.op, resp.StatusCode, c.status, body)
	}
	if route.Operation.Responses.Status(resp.StatusCode) == nil {
		t.Errorf("%s answers %d but api/openapi.json lists no %d for it (only default)", c.op, resp.StatusCode, resp.StatusCode)
	}
	cc.checkAnswer(c.op, in, resp, body)
	return r
}

// checkAnswer validates status, headers and body against the operation's
// documented response. Streams are checked item by item: each NDJSON line
// against the media type's schema, each SSE data line against Event (or
// Gap for "event: gap").
func (cc *contractClient) checkAnswer(op string, in *openapi3filter.RequestValidationInput, resp *http.Response, body []byte) {
	t := cc.t
	t.Helper()
	ct := resp.Header.Get("Content-Type")
	stream := ct == "application/x-ndjson" || ct == "text/event-stream"
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true, ExcludeResponseBody: stream}}
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: %d answer does not match api/openapi.json: %v", op, resp.StatusCode, err)
		return
	}
	if !stream {
		return
	}
	mt := in.Route.Operation.Responses.Status(resp.StatusCode).Value.Content.Get(ct)
	items := 0
	check := func(what string, schema *openapi3.Schema, data []byte) {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Errorf("%s: %s is not JSON: %v: %s", op, what, err, data)
			return
		}
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.MultiErrors()); err != nil {
			t.Errorf("%s: %s does not match api/openapi.json: %v\n%s", op, what, err, data)
		}
		items++
	}
	if ct == "application/x-ndjson" {
		for i, line := range bytes.Split(body, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				check(fmt.Sprintf("line %d", i+1), mt.Schema.Value, line)
			}
		}
	} else {
		schemas := cc.doc.Components.Schemas
		for i, frame := range strings.Split(string(body), "\n\n") {
			event := ""
			for _, line := range strings.Split(frame, "\n") {
				if v, ok := strings.CutPrefix(line, "event: "); ok {
					event = v
				}
				if v, ok := strings.CutPrefix(line, "data: "); ok {
					schema := schemas["Event"].Value
					if event == "gap" {
						schema = schemas["Gap"].Value
					}
					check(fmt.Sprintf("event %d (%s)", i, event), schema, []byte(v))
				}
			}
		}
	}
	if items == 0 && resp.StatusCode == http.StatusOK {
		t.Errorf("%s: the %s stream carried nothing to check", op, ct)
	}
}

// bearerPresent is the document's bearer scheme as a client sees it: an
// Authorization header with a bearer token. (Whether the token is good is
// the server's business: the answer says so.)
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); !ok || tok == "" {
		return errors.New("no bearer token")
	}
	return nil
}
