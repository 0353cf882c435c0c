// Package egress turns an egress grant into one sandbox's firewall.
//
// The control plane builds Rules from the owner's grant (fsm.EgressGrant),
// the addresses that are never reachable (the control plane, the host,
// metadata services) and pinned host names; a short-lived helper that shares
// only the sandbox's network namespace installs them with nftables
// (Install), then exits. The sandbox's own processes have no CAP_NET_ADMIN,
// so they cannot change them. The same rules serve both drivers: Docker runs
// the helper as a container in the sandbox's network, Nomad as a prestart
// task of the sandbox's group.
package egress

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
)

// Rules is one sandbox's egress firewall. Deny wins over everything but
// loopback, replies and DNS to Resolvers; then, with Open, every public
// address is reachable and the Private ranges are not; without Open only
// Allow is.
type Rules struct {
	Open  bool           `json:"open,omitempty"`
	Allow []netip.Prefix `json:"allow,omitempty"`
	// Deny is always unreachable: AlwaysDenied, the control plane, the
	// host's addresses and whatever the operator added. The helper adds
	// the sandbox network's own subnets (its neighbours and gateway).
	Deny []netip.Prefix `json:"deny"`
	// Resolvers may be asked on port 53 (open egress only; an allow-list's
	// host names are pinned in /etc/hosts instead).
	Resolvers []netip.Addr `json:"resolvers,omitempty"`
}

// HelperArg is the sandbox-agent subcommand that installs Rules given as
// JSON: `sandbox-agent egress '<rules>'`.
const HelperArg = "egress"

// Host is a host name pinned to the addresses it had when the sandbox was
// created, for /etc/hosts.
type Host struct {
	Name  string
	Addrs []netip.Addr
}

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// AlwaysDenied are never reachable from a sandbox, whatever the grant:
// "this host", loopback, link-local (with the cloud metadata services at
// 169.254.169.254 and fd00:ec2::254), shared address space (Alibaba's
// metadata service is 100.100.100.200), multicast and reserved space.
var AlwaysDenied = mustPrefixes(
	"0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10", "224.0.0.0/4", "240.0.0.0/4",
	"::/128", "::1/128", "fe80::/10", "ff00::/8", "fd00:ec2::254/128", "::ffff:0:0/96",
)

// Private are the ranges an open grant does not reach: where hosts, the
// control plane and other sandboxes usually live. An allow-list may name
// addresses in them (an internal package mirror); Deny still wins.
var Private = mustPrefixes(
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "192.0.0.0/24", "198.18.0.0/15",
	"fc00::/7", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16",
)

// metadata are the metadata services, never reachable even as a resolver.
var metadata = []netip.Addr{netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("fd00:ec2::254")}

// Entry is one parsed allow-list entry: a prefix or a host name.
type Entry struct {
	Prefix netip.Prefix
	Host   string
}

// ParseEntry parses an allow-list entry: a CIDR, an address or a host name.
// Entries that fall in AlwaysDenied are refused: a grant cannot open them,
// and saying so beats a grant that silently does nothing.
func ParseEntry(s string) (Entry, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p != p.Masked() {
			return Entry{}, fmt.Errorf("%q has host bits set; did you mean %s?", s, p.Masked())
		}
		return entryForPrefix(s, p)
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return Entry{}, fmt.Errorf("%q: zoned addresses are link-local", s)
		}
		return entryForPrefix(s, netip.PrefixFrom(a, a.BitLen()))
	}
	if !validHost(s) {
		return Entry{}, fmt.Errorf("%q is neither a CIDR, an IP address nor a host name", s)
	}
	return Entry{Host: strings.ToLower(strings.TrimSuffix(s, "."))}, nil
}

func entryForPrefix(s string, p netip.Prefix) (Entry, error) {
	for _, d := range AlwaysDenied {
		if d.Overlaps(p) {
			return Entry{}, fmt.Errorf("%q overlaps %s, which a sandbox can never reach", s, d)
		}
	}
	return Entry{Prefix: p}, nil
}

// validHost accepts DNS names: labels of letters, digits and hyphens, not
// starting or ending with a hyphen, at most 253 characters in all.
func validHost(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Resolver looks host names up (net.DefaultResolver.LookupNetIP's shape).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Build turns a sandbox's allow-list (fsm.Sandbox.EgressAllow; empty means
// open) into Rules, resolving host names once: their addresses are allowed
// and returned for pinning. A name that does not resolve is left out with a
// warning rather than failing the sandbox; it is simply unreachable.
func Build(ctx context.Context, allow []string, deny []netip.Prefix, res Resolver, log *slog.Logger) (Rules, []Host, error) {
	r := Rules{Open: len(allow) == 0, Deny: normalize(append(slices.Clone(AlwaysDenied), deny...))}
	var hosts []Host
	for _, s := range allow {
		e, err := ParseEntry(s)
		if err != nil {
			return Rules{}, nil, fmt.Errorf("egress allow-list: %w", err)
		}
		if e.Host == "" {
			r.Allow = append(r.Allow, e.Prefix)
			continue
		}
		addrs, err := res.LookupNetIP(ctx, "ip", e.Host)
		if err != nil || len(addrs) == 0 {
			log.Warn("egress allow-list: host name does not resolve; it stays unreachable", "host", e.Host, "err", err)
			continue
		}
		for i, a := range addrs {
			addrs[i] = a.Unmap()
			r.Allow = append(r.Allow, netip.PrefixFrom(addrs[i], addrs[i].BitLen()))
		}
		hosts = append(hosts, Host{Name: e.Host, Addrs: addrs})
	}
	r.Allow = normalize(r.Allow)
	return r, hosts, nil
}

// WithResolvers returns r allowing DNS to servers (the sandbox's
// resolv.conf) when r is open; the metadata services never qualify.
func (r Rules) WithResolvers(servers []netip.Addr) Rules {
	if !r.Open {
		return r
	}
	for _, s := range servers {
		if s = s.Unmap(); !slices.Contains(metadata, s) && !s.IsLoopback() {
			r.Resolvers = append(r.Resolvers, s)
		}
	}
	return r
}

// normalize masks and de-duplicates prefixes, in a stable order. It does
// not unmap: ::ffff:0:0/96 is an IPv6 rule (mapped addresses must not slip
// past the IPv4 table), not 0.0.0.0/0.
func normalize(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		p = p.Masked()
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// HostEntries formats pinned hosts the way Docker's ExtraHosts and Nomad's
// extra_hosts take them: "name:address", one per address.
func HostEntries(hosts []Host) []string {
	var out []string
	for _, h := range hosts {
		for _, a := range h.Addrs {
			out = append(out, h.Name+":"+a.String())
		}
	}
	return out
}
