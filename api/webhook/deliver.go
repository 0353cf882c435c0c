// Package webhook delivers each user's sandbox events to the URL they
// registered: from the leader only, in order, at least once, signed.
//
// Where delivery stands is replicated (fsm.Webhook.Cursor, moved by
// WebhookDelivered after each acknowledged event), so a new leader
// resumes after the last event a receiver acknowledged: a leader change
// redelivers at most the one event in flight, never the backlog, and
// loses none.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/cluster"
	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

// Headers of a delivery.
const (
	// HeaderSignature is "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
	HeaderSignature = "X-Cloud-Sandbox-Signature"
	HeaderEvent     = "X-Cloud-Sandbox-Event"
	HeaderEventID   = "X-Cloud-Sandbox-Event-Id"
	HeaderAttempt   = "X-Cloud-Sandbox-Delivery-Attempt"
)

// State is the replicated state the deliverer reads (*fsm.FSM).
type State interface {
	Webhooks() []*fsm.Webhook
	Webhook(user string) *fsm.Webhook
	EventsAfterKey(key string, limit int) (events []fsm.Event, complete bool)
	Watch() <-chan struct{}
}

// Applier proposes commands (the cluster node).
type Applier interface {
	Apply(ctx context.Context, cmd fsm.Command) (*fsm.Response, error)
}

// Config tunes delivery.
type Config struct {
	// AllowPrivate lets deliveries reach loopback, private and link-local
	// addresses (development; tests). Off in production: a webhook URL
	// must not become a way into the control plane's network.
	AllowPrivate bool
	// Timeout bounds one delivery attempt (default 10 s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff space the retries of a failing receiver
	// (defaults 1 s and 5 min, doubling).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// Deliverer runs on the leader: one worker per webhook.
type Deliverer struct {
	cfg    Config
	state  State
	apply  Applier
	client *http.Client
	log    *slog.Logger
}

// New returns a deliverer; call Lead.
func New(cfg Config, state State, apply Applier) *Deliverer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Deliverer{cfg: cfg, state: state, apply: apply, log: cfg.Logger.With("component", "webhook")}
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: d.checkAddress}
	d.client = &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 2,
			IdleConnTimeout: 30 * time.Second, TLSHandshakeTimeout: cfg.Timeout},
		// A redirect could lead anywhere; a receiver answers where it was asked.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return d
}

// checkAddress refuses, at connect time (after DNS, so a name that later
// resolves elsewhere cannot get around it), addresses a webhook must not
// reach unless AllowPrivate.
func (d *Deliverer) checkAddress(_, address string, _ syscall.RawConn) error {
	if d.cfg.AllowPrivate {
		return nil
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !PublicIP(ip) {
		return fmt.Errorf("webhook address %s is not a public address", host)
	}
	return nil
}

// PublicIP reports whether ip is a routable public address: not loopback,
// private, link-local (cloud metadata), shared (100.64/10), multicast or
// unspecified.
func PublicIP(ip net.IP) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	_, shared, _ := net.ParseCIDR("100.64.0.0/10")
	return !shared.Contains(ip)
}

// Lead delivers while this node leads, until ctx ends.
func (d *Deliverer) Lead(ctx context.Context, isLeader bool, leaderCh <-chan bool) {
	cluster.RunWhileLeader(ctx, isLeader, leaderCh, d.Run)
}

// Run delivers for one term: a worker per webhook, started and stopped as
// webhooks come and go.
func (d *Deliverer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	workers := map[string]context.CancelFunc{}
	defer func() {
		for _, cancel := range workers {
			cancel()
		}
	}()
	for {
		watch := d.state.Watch()
		seen := map[string]bool{}
		for _, w := range d.state.Webhooks() {
			seen[w.User] = true
			if _, ok := workers[w.User]; ok {
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			workers[w.User] = cancel
			wg.Add(1)
			go func(user string) {
				defer wg.Done()
				d.work(wctx, user)
			}(w.User)
		}
		for user, cancel := range workers {
			if !seen[user] {
				cancel()
				delete(workers, user)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-watch:
		}
	}
}

// skipFlush bounds how many other users' events a worker passes over
// before it records its place, so a restart does not rescan them all.
const skipFlush = 500

// work delivers one user's events in order until ctx ends or the webhook
// goes.
func (d *Deliverer) work(ctx context.Context, user string) {
	log := d.log.With("user", user)
	var cursor string // where this worker stands; replicated when it delivers
	skipped := 0
	for ctx.Err() == nil {
		watch := d.state.Watch()
		w := d.state.Webhook(user)
		if w == nil {
			return
		}
		if cursor < w.Cursor {
			cursor = w.Cursor
		}
		events, complete := d.state.EventsAfterKey(cursor, 100)
		if !complete {
			log.Warn("some events were dropped from the event log before they were delivered", "after", cursor)
		}
		for _, e := range events {
			key := fsm.EventKey(e)
			if e.Owner != user {
				cursor = key
				if skipped++; skipped >= skipFlush {
					d.record(ctx, &fsm.WebhookDelivered{User: user, Through: key})
					skipped = 0
				}
				continue
			}
			if !d.deliverWithRetries(ctx, w, e) {
				return // the term ended or the webhook changed
			}
			cursor, skipped = key, 0
			d.record(ctx, &fsm.WebhookDelivered{User: user, Through: key, Count: 1})
		}
		if len(events) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-watch:
		}
	}
}

// deliverWithRetries posts e until the receiver acknowledges it (2xx),
// backing off between failures. false: ctx ended or the webhook was
// changed or removed meanwhile (its new incarnation starts elsewhere).
func (d *Deliverer) deliverWithRetries(ctx context.Context, w *fsm.Webhook, e fsm.Event) bool {
	backoff := d.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := d.deliver(ctx, w, e, attempt)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d.log.Info("webhook delivery failed; retrying", "user", w.User, "event", e.ID, "attempt", attempt,
			"retry_in", backoff, "err", err)
		d.record(ctx, &fsm.WebhookDelivered{User: w.User, Error: err.Error()})
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, d.cfg.MaxBackoff)
		if cur := d.state.Webhook(w.User); cur == nil || cur.URL != w.URL || cur.Secret != w.Secret {
			return false
		}
	}
}

// deliver makes one signed POST of e.
func (d *Deliverer) deliver(ctx context.Context, w *fsm.Webhook, e fsm.Event, attempt int) error {
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "cloud-sandbox-webhook/1")
	req.Header.Set(HeaderSignature, Sign(w.Secret, time.Now(), body))
	req.Header.Set(HeaderEvent, string(e.Type))
	req.Header.Set(HeaderEventID, e.ID)
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("post %s: %w", e.ID, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post %s: receiver answered HTTP %d", e.ID, resp.StatusCode)
	}
	return nil
}

// record proposes delivery progress; a failure only costs a redelivery.
func (d *Deliverer) record(ctx context.Context, cmd *fsm.WebhookDelivered) {
	if _, err := d.apply.Apply(ctx, cmd); err != nil && ctx.Err() == nil && !errors.Is(err, fsm.ErrNotFound) {
		d.log.Warn("record webhook progress", "user", cmd.User, "err", err)
	}
}

// Sign returns the signature header value for body sent at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header against body, as a receiver does:
// the MAC must match and t be within tolerance of now (replays of old
// deliveries are refused).
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range bytes.Split([]byte(header), []byte(",")) {
		k, v, _ := bytes.Cut(part, []byte("="))
		switch string(k) {
		case "t":
			ts = string(v)
		case "v1":
			sig = string(v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("signature header: want t=<unix>,v1=<hex>")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("signature timestamp %s is outside the %v tolerance", ts, tolerance)
	}
	if !hmac.Equal([]byte(sig), []byte(mac(secret, ts, body))) {
		return errors.New("signature does not match")
	}
	return nil
}
