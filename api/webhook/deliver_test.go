package webhook

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

func TestSignAndVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"7-0"}`)
	good := Sign("s3cret-s3cret-s3", now, body)
	cases := []struct {
		name, secret, header string
		body                 []byte
		at                   time.Time
		ok                   bool
	}{
		{"valid", "s3cret-s3cret-s3", good, body, now, true},
		{"within tolerance", "s3cret-s3cret-s3", good, body, now.Add(4 * time.Minute), true},
		{"replayed later", "s3cret-s3cret-s3", good, body, now.Add(10 * time.Minute), false},
		{"other secret", "another-secret-x", good, body, now, false},
		{"body changed", "s3cret-s3cret-s3", good, []byte(`{"id":"8-0"}`), now, false},
		{"garbage header", "s3cret-s3cret-s3", "v1=abc", body, now, false},
	}
	for _, tc := range cases {
		err := Verify(tc.secret, tc.header, tc.body, tc.at, 5*time.Minute)
		if (err == nil) != tc.ok {
			t.Errorf("%s: Verify = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestPublicIP(t *testing.T) {
	cases := map[string]bool{
		"203.0.113.7": true, "2001:db8::1": true, "8.8.4.4": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "192.168.0.1": false, "172.16.5.4": false,
		"169.254.169.254": false, "fe80::1": false, "100.64.0.1": false, "0.0.0.0": false, "224.0.0.1": false,
		"fd00:ec2::254": false,
	}
	for addr, want := range cases {
		if got := PublicIP(net.ParseIP(addr)); got != want {
			t.Errorf("PublicIP(%s) = %v, want %v", addr, got, want)
		}
	}
}

// TestDeliveryRefusesPrivateAddressesUnlessAllowed: with AllowPrivate off
// (production) a receiver on loopback is never contacted, whatever the URL
// says; with it on, it is.
func TestDeliveryRefusesPrivateAddressesUnlessAllowed(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer srv.Close()
	hook := &fsm.Webhook{User: "u", URL: srv.URL, Secret: "s3cret-s3cret-s3"}
	ev := fsm.Event{ID: "1-0", Type: fsm.EventCreated, SandboxID: "a", Owner: "u"}
	for _, allow := range []bool{false, true} {
		d := New(Config{AllowPrivate: allow, Timeout: 2 * time.Second}, nil, nil)
		err := d.deliver(context.Background(), hook, ev, 1)
		if allow && err != nil {
			t.Errorf("allowed: %v", err)
		}
		if !allow && err == nil {
			t.Error("a loopback receiver was reached with private addresses refused")
		}
	}
	if hits != 1 {
		t.Errorf("receiver hit %d times, want once (only when allowed)", hits)
	}
}
