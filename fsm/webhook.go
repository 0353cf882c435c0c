package fsm

import (
	"time"
)

// Webhooks: a user's URL that the leader POSTs each of the user's events
// to, at least once and in order. Where delivery stands is replicated
// (Cursor), so a new leader resumes after the last event acknowledged:
// a leader change neither loses events nor sends the backlog again.

// Command types of the webhook commands.
const (
	TypeWebhookSet       CommandType = 21
	TypeWebhookDelivered CommandType = 22
)

// Webhook is one user's subscription.
type Webhook struct {
	User string `json:"user"`
	URL  string `json:"url"`
	// Secret signs every delivery (HMAC-SHA256). It is replicated with the
	// state, as the tokens' signing key is not: treat snapshots as secret.
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"created_at"`
	// Cursor is the key of the last event delivered (or skipped as not the
	// user's); delivery resumes after it.
	Cursor string `json:"cursor"`
	// Failures counts failed attempts since the last success; LastError
	// says why the latest failed.
	Failures      int       `json:"failures,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	LastAttemptAt time.Time `json:"last_attempt_at,omitempty"`
	Delivered     uint64    `json:"delivered,omitempty"`
}

// Copy returns a copy.
func (w *Webhook) Copy() *Webhook {
	if w == nil {
		return nil
	}
	c := *w
	return &c
}

// WebhookSet makes (or, with Delete, removes) user's webhook. A new or
// changed URL starts from the events after this command.
type WebhookSet struct {
	Header
	User   string `json:"user"`
	URL    string `json:"url,omitempty"`
	Secret string `json:"secret,omitempty"`
	Delete bool   `json:"delete,omitempty"`
}

// WebhookDelivered records delivery progress: the cursor moves to Through
// (never back), Delivered grows by Count; with Error set it records a
// failed attempt instead.
type WebhookDelivered struct {
	Header
	User    string `json:"user"`
	Through string `json:"through,omitempty"`
	Count   uint64 `json:"count,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (*WebhookSet) Type() CommandType       { return TypeWebhookSet }
func (*WebhookDelivered) Type() CommandType { return TypeWebhookDelivered }

func (t *tx) webhook(user string) *Webhook {
	raw, err := t.txn.First(tableWebhooks, "id", user)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*Webhook)
}

// latestEventKey is the key of the newest event, "" when there is none.
func (t *tx) latestEventKey() string {
	raw, err := t.txn.Last(tableEvents, "id")
	must(err)
	if raw == nil {
		return ""
	}
	return raw.(*eventRow).Key
}

func applyWebhookSet(t *tx, c *WebhookSet) *Response {
	old := t.webhook(c.User)
	switch {
	case c.User == "":
		return fail(errorf(CodeInvalid, "user is required"))
	case c.Delete && old == nil:
		return fail(errorf(CodeNotFound, "no webhook for %s", c.User))
	case c.Delete:
		must(t.txn.Delete(tableWebhooks, old))
		return &Response{}
	case c.URL == "" || c.Secret == "":
		return fail(errorf(CodeInvalid, "url and secret are required"))
	}
	w := &Webhook{User: c.User, URL: c.URL, Secret: c.Secret, CreatedAt: c.Now, Cursor: t.latestEventKey()}
	if old != nil && old.URL == c.URL {
		// Same receiver, new secret: keep its place in the stream.
		w.Cursor, w.Delivered, w.CreatedAt = old.Cursor, old.Delivered, old.CreatedAt
	}
	must(t.txn.Insert(tableWebhooks, w))
	return &Response{Webhook: w.redacted()}
}

// redacted is a copy without the secret: responses are kept for
// deduplication and travel to whichever node forwarded the command.
func (w *Webhook) redacted() *Webhook {
	c := w.Copy()
	c.Secret = ""
	return c
}

func applyWebhookDelivered(t *tx, c *WebhookDelivered) *Response {
	old := t.webhook(c.User)
	if old == nil {
		return fail(errorf(CodeNotFound, "no webhook for %s", c.User))
	}
	w := old.Copy()
	w.LastAttemptAt = c.Now
	if c.Error != "" {
		w.Failures++
		w.LastError = c.Error
	} else {
		if c.Through > w.Cursor {
			w.Cursor = c.Through
		}
		w.Delivered += c.Count
		w.Failures, w.LastError = 0, ""
	}
	must(t.txn.Insert(tableWebhooks, w))
	return &Response{Webhook: w.redacted()}
}

// Webhook returns user's webhook, or nil.
func (f *FSM) Webhook(user string) *Webhook {
	raw, err := f.read().First(tableWebhooks, "id", user)
	must(err)
	if raw == nil {
		return nil
	}
	return raw.(*Webhook).Copy()
}

// Webhooks returns every webhook.
func (f *FSM) Webhooks() []*Webhook {
	it, err := f.read().Get(tableWebhooks, "id")
	must(err)
	var out []*Webhook
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Webhook).Copy())
	}
	return out
}

// EventsAfterKey returns up to limit events after the one stored under key
// ("" for the oldest kept), oldest first; complete as in EventsAfter.
func (f *FSM) EventsAfterKey(key string, limit int) (events []Event, complete bool) {
	events, _, complete = f.eventsFrom(key+"\x00", limit)
	return events, complete
}

// EventKey is the sortable key an event is stored under (a webhook's
// cursor is one).
func EventKey(e Event) string { return eventKey(e.Index, e.Seq) }
