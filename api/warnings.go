package api

import (
	"fmt"
	"net"
	"time"
)

// longAccessTTL is the access token lifetime above which start-up warns: a
// stolen token is good for that long unless someone revokes it.
const longAccessTTL = time.Hour

// UnsafeSettings lists, one sentence each, the settings of c that leave the
// API open in a way an operator should know about; listen is the public
// listener's address. Start-up logs each as a WARN. Development defaults
// produce several on purpose: they are the guide's open flow, and the
// warnings say what to set before anyone else can reach the port.
func (c Config) UnsafeSettings(listen string) []string {
	c = c.withDefaults()
	var w []string
	if c.JWTSecret == DefaultJWTSecret {
		w = append(w, "JWT_SECRET is the default: anyone who reads the guide can mint tokens")
	}
	if c.Mode == ModeDevelopment && !loopbackAddr(listen) {
		w = append(w, fmt.Sprintf("development mode (SANDBOX_MODE) issues tokens to anyone who asks, and LISTEN_ADDR %q is reachable beyond this host", listen))
	}
	if imagesOpen(c.AllowedImages) {
		w = append(w, "SANDBOX_ALLOWED_IMAGES allows every image (*): callers may start any image and make the daemon pull from any registry address")
	}
	if c.AccessTTL > longAccessTTL {
		w = append(w, fmt.Sprintf("ACCESS_TOKEN_TTL is %s: a leaked access token works that long unless revoked (15m is a safer choice)", c.AccessTTL))
	}
	return w
}

// loopbackAddr reports whether addr ("host:port") listens on loopback only.
// An empty host (":8080") is every interface; a name is trusted only when it
// is "localhost".
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
