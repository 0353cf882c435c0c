package api

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// Lists of sandboxes and sessions take filters and pages. Items are in
// creation order (their Raft CreateIndex, the same on every node), so a
// page token — the position of the last item handed out — means the same
// thing on every node and stays valid while items come and go.
const (
	defaultPageSize = 1000
	maxPageSize     = 1000
)

// listQuery is a parsed list request.
type listQuery struct {
	state         string
	image         string
	metadata      map[string]string
	createdAfter  time.Time
	createdBefore time.Time
	limit         int
	// after is the CreateIndex of the last item of the previous page.
	after uint64
}

func parseListQuery(q url.Values) (listQuery, error) {
	lq := listQuery{state: q.Get("state"), image: q.Get("image"), limit: defaultPageSize}
	for key, vals := range q {
		if name, ok := strings.CutPrefix(key, "metadata."); ok && len(vals) > 0 {
			if lq.metadata == nil {
				lq.metadata = map[string]string{}
			}
			lq.metadata[name] = vals[0]
		}
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"created_after", &lq.createdAfter}, {"created_before", &lq.createdBefore}} {
		if v := q.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return lq, errBadRequest("%s: want an RFC 3339 time such as 2026-01-02T15:04:05Z", f.name)
			}
			*f.dst = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return lq, errUnprocessable("limit must be between 1 and %d", maxPageSize)
		}
		lq.limit = n
	}
	if v := q.Get("page_token"); v != "" {
		after, err := decodePageToken(v)
		if err != nil {
			return lq, errBadRequest("page_token: not one this API handed out")
		}
		lq.after = after
	}
	return lq, nil
}

func encodePageToken(createIndex uint64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("v1:%d", createIndex)))
}

func decodePageToken(tok string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, err
	}
	n, ok := strings.CutPrefix(string(b), "v1:")
	if !ok {
		return 0, fmt.Errorf("page token version")
	}
	return strconv.ParseUint(n, 10, 64)
}

func (lq listQuery) matchTime(created time.Time) bool {
	return (lq.createdAfter.IsZero() || created.After(lq.createdAfter)) &&
		(lq.createdBefore.IsZero() || created.Before(lq.createdBefore))
}

// page sorts items by creation, keeps those after the token that match,
// and returns at most limit of them with the token of the next page ("" on
// the last).
func page[T any](items []T, lq listQuery, createIndex func(T) uint64, match func(T) bool) ([]T, string) {
	slices.SortFunc(items, func(a, b T) int { return cmp.Compare(createIndex(a), createIndex(b)) })
	var out []T
	for _, it := range items {
		if createIndex(it) <= lq.after || !match(it) {
			continue
		}
		if len(out) == lq.limit {
			return out, encodePageToken(createIndex(out[len(out)-1]))
		}
		out = append(out, it)
	}
	return out, ""
}

func (lq listQuery) matchSandbox(sb *fsm.Sandbox) bool {
	if lq.state != "" && string(sb.State) != lq.state {
		return false
	}
	if lq.image != "" && sb.Image != lq.image {
		return false
	}
	for k, v := range lq.metadata {
		if got, ok := sb.Metadata[k]; !ok || got != v {
			return false
		}
	}
	return lq.matchTime(sb.CreatedAt)
}

func (lq listQuery) matchSession(se *fsm.Session) bool {
	if lq.state != "" && string(se.State) != lq.state {
		return false
	}
	if lq.state == "" && se.State == fsm.SessionDeleted {
		return false // tombstones only when asked for by state
	}
	if lq.image != "" && se.Image != lq.image {
		return false
	}
	return lq.matchTime(se.CreatedAt)
}
