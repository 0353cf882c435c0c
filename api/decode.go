package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// decodeJSON reads one JSON object from the body into v. An empty body is
// allowed when optional is set (acquire takes an optional body). Unknown
// fields are ignored so that newer clients work with older servers.
func decodeJSON(r *http.Request, v any, optional bool) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			if optional {
				return nil
			}
			return errBadRequest("request body is empty; a JSON object is required")
		}
		return err // classify maps syntax, type and size errors
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var maxBytes *http.MaxBytesError
		if errors.As(err, &maxBytes) {
			return err
		}
		return errBadRequest("request body has data after the JSON object")
	}
	return nil
}
