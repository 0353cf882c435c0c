package controlnode

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"
)

// egressDeny lists what no sandbox may reach besides egress.AlwaysDenied
// and its own network: this node's addresses (the host, when sandboxd runs
// on it), every control node's cluster and API address, and the CIDRs in
// EGRESS_DENY (for control planes and hosts elsewhere, e.g. the Nomad
// servers' network). A malformed EGRESS_DENY stops start-up.
func egressDeny(ctx context.Context, cfg *config, getenv func(string) string, log *slog.Logger) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(getenv("EGRESS_DENY"), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := parsePrefixOrAddr(s)
		if err != nil {
			return nil, fmt.Errorf("EGRESS_DENY: %w", err)
		}
		out = append(out, p)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					out = append(out, host(ip))
				}
			}
		}
	} else {
		log.Warn("egress: cannot list this node's addresses to deny them", "err", err)
	}
	hostports := []string{cfg.RaftAddr, cfg.Advertise, cfg.Listen, cfg.HTTPAdvertise}
	for _, p := range cfg.Peers {
		hostports = append(hostports, p.Addr)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, hp := range hostports {
		h, _, err := net.SplitHostPort(hp)
		if err != nil || h == "" {
			continue
		}
		addrs, err := net.DefaultResolver.LookupNetIP(lctx, "ip", h)
		if err != nil {
			log.Warn("egress: cannot resolve a control-plane address to deny it; list it in EGRESS_DENY", "addr", hp, "err", err)
			continue
		}
		for _, a := range addrs {
			if !a.IsUnspecified() {
				out = append(out, host(a))
			}
		}
	}
	return out, nil
}

func host(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen())
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR nor an IP address", s)
	}
	return host(a), nil
}
