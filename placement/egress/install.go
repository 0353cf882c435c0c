package egress

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Table is the nftables table (one per family) holding a sandbox's rules.
const Table = "cloud_sandbox_egress"

// Install replaces this network namespace's egress rules with r, adding
// the namespace's own subnets to Deny (the sandbox's neighbours and its
// gateway, the host). It needs CAP_NET_ADMIN in the namespace, which is
// why a helper runs it and not the sandbox's agent.
func Install(r Rules) error {
	local, err := LocalPrefixes()
	if err != nil {
		return err
	}
	r.Deny = normalize(append(r.Deny, local...))
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("egress: open nftables: %w", err)
	}
	for _, fam := range []family{ipv4, ipv6} {
		fam.install(c, r)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("egress: install nftables rules: %w", err)
	}
	return nil
}

// family is what differs between the ip and ip6 tables.
type family struct {
	nft       nftables.TableFamily
	is4       bool
	daddrOff  uint32
	addrLen   uint32
	rejectTyp uint32
	rejectCod uint8
}

var (
	ipv4 = family{nftables.TableFamilyIPv4, true, 16, 4, unix.NFT_REJECT_ICMP_UNREACH, 13}  // communication administratively prohibited
	ipv6 = family{nftables.TableFamilyIPv6, false, 24, 16, unix.NFT_REJECT_ICMP_UNREACH, 1} // ICMPv6: administratively prohibited
)

func (f family) install(c *nftables.Conn, r Rules) {
	t := &nftables.Table{Family: f.nft, Name: Table}
	// Adding then deleting makes the delete safe when the table is new, so
	// a second Install replaces the rules instead of appending to them.
	c.AddTable(t)
	c.DelTable(t)
	t = c.AddTable(t)
	drop := nftables.ChainPolicyDrop
	ch := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	add := func(e ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e}) }
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	reject := &expr.Reject{Type: f.rejectTyp, Code: f.rejectCod}

	// Loopback is the sandbox's own; replies answer connections made to it.
	add(&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("lo")}, accept)
	add(&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: nativeUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: nativeUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: nativeUint32(0)}, accept)
	for _, a := range r.Resolvers {
		if a.Is4() != f.is4 {
			continue
		}
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			add(append(f.match(netip.PrefixFrom(a, a.BitLen())),
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 53}}, accept)...)
		}
	}
	for _, p := range r.Deny {
		if p.Addr().Is4() == f.is4 {
			add(append(f.match(p), reject)...)
		}
	}
	if r.Open {
		for _, p := range Private {
			if p.Addr().Is4() == f.is4 {
				add(append(f.match(p), reject)...)
			}
		}
		add(accept)
		return
	}
	for _, p := range r.Allow {
		if p.Addr().Is4() == f.is4 {
			add(append(f.match(p), accept)...)
		}
	}
	add(reject)
}

// match compares the destination address under p's mask with p.
func (f family) match(p netip.Prefix) []expr.Any {
	mask := net.CIDRMask(p.Bits(), int(f.addrLen)*8)
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: f.addrLen, Mask: mask, Xor: make([]byte, f.addrLen)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

func ifname(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

func nativeUint32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// LocalPrefixes are the subnets of this namespace's interfaces but
// loopback: the sandbox's neighbours and its gateway.
func LocalPrefixes() ([]netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("egress: list interfaces: %w", err)
	}
	var out []netip.Prefix
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("egress: addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, _ := netip.AddrFromSlice(n.IP)
			bits, _ := n.Mask.Size()
			if ip = ip.Unmap(); ip.IsLinkLocalUnicast() {
				continue // fe80::/10 is in AlwaysDenied already
			}
			out = append(out, netip.PrefixFrom(ip, bits).Masked())
		}
	}
	return out, nil
}

// ReadResolvers returns the nameservers of a resolv.conf file.
func ReadResolvers(path string) ([]netip.Addr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("egress: read resolvers: %w", err)
	}
	defer f.Close()
	var out []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				out = append(out, a.WithZone(""))
			}
		}
	}
	return out, sc.Err()
}
