package egress

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseEntry(t *testing.T) {
	tests := []struct {
		in, prefix, host, err string
	}{
		{in: "203.0.113.0/24", prefix: "203.0.113.0/24"},
		{in: "203.0.113.7", prefix: "203.0.113.7/32"},
		{in: "2001:db8::/32", prefix: "2001:db8::/32"},
		{in: "10.1.0.0/16", prefix: "10.1.0.0/16"},
		{in: "PyPI.org.", host: "pypi.org"},
		{in: "mirror-1.internal", host: "mirror-1.internal"},
		{in: "203.0.113.7/24", err: "host bits"},
		{in: "169.254.169.254", err: "never reach"},
		{in: "169.254.0.0/16", err: "never reach"},
		{in: "0.0.0.0/0", err: "never reach"},
		{in: "127.0.0.1", err: "never reach"},
		{in: "fd00:ec2::254", err: "never reach"},
		{in: "::ffff:10.0.0.1", err: "never reach"},
		{in: "fe80::1%eth0", err: "zoned"},
		{in: "-bad.example", err: "neither"},
		{in: "a..b", err: "neither"},
		{in: "*.example.com", err: "neither"},
		{in: "", err: "neither"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			e, err := ParseEntry(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseEntry(%q) = %+v, %v; want error with %q", tc.in, e, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEntry(%q): %v", tc.in, err)
			}
			if tc.prefix != "" && e.Prefix.String() != tc.prefix || e.Host != tc.host {
				t.Errorf("ParseEntry(%q) = %+v, want prefix %q host %q", tc.in, e, tc.prefix, tc.host)
			}
		})
	}
}

type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestBuild(t *testing.T) {
	res := mapResolver{"mirror.test": {netip.MustParseAddr("::ffff:203.0.113.5"), netip.MustParseAddr("2001:db8::5")}}
	control := netip.MustParsePrefix("198.51.100.9/32")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	r, hosts, err := Build(context.Background(), []string{"203.0.113.0/24", "mirror.test", "gone.test", "203.0.113.0/24"}, []netip.Prefix{control}, res, log)
	if err != nil {
		t.Fatal(err)
	}
	if r.Open {
		t.Error("an allow-list built open rules")
	}
	wantAllow := []string{"203.0.113.0/24", "203.0.113.5/32", "2001:db8::5/128"}
	var got []string
	for _, p := range r.Allow {
		got = append(got, p.String())
	}
	if !slices.Equal(got, wantAllow) {
		t.Errorf("allow = %v, want %v (mapped addresses unmapped, duplicates and unresolved names dropped)", got, wantAllow)
	}
	if !slices.Contains(r.Deny, control) || !slices.Contains(r.Deny, netip.MustParsePrefix("169.254.0.0/16")) {
		t.Errorf("deny = %v, want the control plane and link-local", r.Deny)
	}
	// The v4-mapped block stays an IPv6 rule: unmapped it would be 0.0.0.0/0.
	for _, p := range r.Deny {
		if p.Addr().Is4() && p.Bits() == 0 {
			t.Errorf("deny holds %s, which blocks every IPv4 address", p)
		}
	}
	if e := HostEntries(hosts); !slices.Equal(e, []string{"mirror.test:203.0.113.5", "mirror.test:2001:db8::5"}) {
		t.Errorf("host entries = %v", e)
	}

	open, _, err := Build(context.Background(), nil, nil, res, log)
	if err != nil || !open.Open || len(open.Allow) != 0 {
		t.Errorf("empty allow-list = %+v, %v; want open", open, err)
	}
	if _, _, err := Build(context.Background(), []string{"169.254.169.254"}, nil, res, log); err == nil {
		t.Error("Build accepted the metadata address")
	}
}

func TestWithResolvers(t *testing.T) {
	servers := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("127.0.0.11")}
	if r := (Rules{Open: true}).WithResolvers(servers); !slices.Equal(r.Resolvers, servers[:1]) {
		t.Errorf("open rules resolvers = %v, want only 10.0.0.2 (never metadata, loopback is always allowed)", r.Resolvers)
	}
	if r := (Rules{}).WithResolvers(servers); len(r.Resolvers) != 0 {
		t.Errorf("allow-list rules got resolvers %v; their names are pinned", r.Resolvers)
	}
}
