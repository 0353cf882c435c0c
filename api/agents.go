package api

import (
	"context"
	"io"
	"os"
	"sync"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
	"github.com/cloud-sandbox/cloud-sandbox/placement/agent"
)

// sandboxAgent is what the API asks of a sandbox's agent (*agent.Client).
type sandboxAgent interface {
	Exec(ctx context.Context, req agent.ExecRequest) (*agent.ExecResult, error)
	ExecStream(ctx context.Context, req agent.ExecRequest, fn func(agent.Event) error) (*agent.ExecResult, error)
	ReadFile(ctx context.Context, path string) (io.ReadCloser, error)
	WriteFile(ctx context.Context, path string, r io.Reader, mode os.FileMode) (int64, error)
	ListFiles(ctx context.Context, path string) ([]agent.FileInfo, error)
	Delete(ctx context.Context, path string, recursive bool) error
	Mkdir(ctx context.Context, path string) error
	Download(ctx context.Context, path string) (io.ReadCloser, error)
	Upload(ctx context.Context, path string, tarStream io.Reader) (int, error)
}

// agentCache keeps one client (and so one pool of keep-alive connections)
// per sandbox. An entry is replaced when the placement changes, and dropped
// when the sandbox is released.
type agentCache struct {
	// exists reports whether a sandbox is still in the state; entries of
	// sandboxes removed behind our back (reaper, another node) are pruned.
	exists func(id string) bool

	mu      sync.Mutex
	clients map[string]cachedAgent
	adds    int
}

type cachedAgent struct {
	endpoint string
	secret   string
	pin      string // the agent certificate's SHA-256
	client   *agent.Client
}

// pruneEvery is how many new clients are made between two prunes.
const pruneEvery = 64

func newAgentCache(exists func(id string) bool) *agentCache {
	return &agentCache{exists: exists, clients: map[string]cachedAgent{}}
}

func (c *agentCache) get(sb *fsm.Sandbox) sandboxAgent {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := sb.Placement
	if e, ok := c.clients[sb.ID]; ok && e.endpoint == p.AgentEndpoint && e.secret == p.AgentSecret && e.pin == p.AgentCertSHA256 {
		return e.client
	}
	if old, ok := c.clients[sb.ID]; ok {
		old.client.Close()
	}
	c.adds++
	if c.adds%pruneEvery == 0 {
		for id, e := range c.clients {
			if !c.exists(id) {
				e.client.Close()
				delete(c.clients, id)
			}
		}
	}
	cl := agent.NewPinnedClient(p.AgentEndpoint, p.AgentSecret, p.AgentCertSHA256)
	c.clients[sb.ID] = cachedAgent{endpoint: p.AgentEndpoint, secret: p.AgentSecret, pin: p.AgentCertSHA256, client: cl}
	return cl
}

func (c *agentCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.clients[id]; ok {
		e.client.Close()
		delete(c.clients, id)
	}
}

func (c *agentCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.clients {
		e.client.Close()
		delete(c.clients, id)
	}
}
