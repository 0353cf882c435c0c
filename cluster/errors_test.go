package cluster

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/cloud-sandbox/cloud-sandbox/fsm"
)

func fsmForTest() *fsm.FSM { return fsm.New() }

// Without a quorum every entry point reports ErrNoLeader (plus ErrTimeout
// once the caller's deadline passes), which the API maps to 503.
func TestNoQuorumErrors(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	survivor := c.follower()
	for i := range c.nodes {
		if c.node(i) != survivor {
			c.kill(i)
		}
	}
	waitFor(t, 10*time.Second, "the survivor to lose the leader", func() bool {
		_, addr := survivor.Leader()
		return addr == "" && !survivor.IsLeader()
	})
	for _, tc := range []struct {
		name string
		op   func(ctx context.Context) error
	}{
		{"apply", func(ctx context.Context) error {
			_, err := survivor.Apply(ctx, setPool(3))
			return err
		}},
		{"consistent read", survivor.ConsistentRead},
		{"wait for leader", survivor.WaitForLeader},
		{"join", func(ctx context.Context) error { return survivor.Join(ctx, "n9", "127.0.0.1:1") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := tc.op(ctx)
			if !errors.Is(err, ErrNoLeader) {
				t.Fatalf("err = %v, want ErrNoLeader", err)
			}
		})
	}
}

func TestClosedNode(t *testing.T) {
	c := startCluster(t, 1, bootJoin, nil)
	n := c.node(0)
	c.kill(0)
	if _, err := n.Apply(context.Background(), setPool(3)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply on a closed node = %v, want ErrClosed", err)
	}
	if err := n.ConsistentRead(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("ConsistentRead on a closed node = %v, want ErrClosed", err)
	}
	if _, ok := <-n.LeaderCh(); ok {
		t.Fatal("LeaderCh of a closed node is open")
	}
}

// A linearizable read on a follower sees every write acknowledged before it.
func TestConsistentReadSeesAcknowledgedWrites(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	mustApply(t, c.leader(), setPool(1000))
	for _, reader := range []struct {
		name string
		node *Node
	}{{"on a follower", c.follower()}, {"on the leader", c.leader()}} {
		t.Run(reader.name, func(t *testing.T) {
			for i := range 20 {
				id := reader.name + "-" + string(rune('a'+i))
				mustApply(t, c.leader(), &fsm.SandboxCreate{ID: id})
				if err := reader.node.ConsistentRead(testCtx(t, 10*time.Second)); err != nil {
					t.Fatal(err)
				}
				if _, err := reader.node.FSM().Sandbox(id); err != nil {
					t.Fatalf("write %d not visible after ConsistentRead: %v", i, err)
				}
			}
		})
	}
}

func TestBarrier(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	l := c.leader()
	mustApply(t, c.follower(), setPool(4))
	if err := l.Barrier(testCtx(t, 10*time.Second)); err != nil {
		t.Fatalf("Barrier on the leader: %v", err)
	}
	if got := l.FSM().Pool().MaxSize; got != 4 {
		t.Fatalf("leader pool max after Barrier = %d, want 4", got)
	}
	if err := c.follower().Barrier(testCtx(t, 10*time.Second)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Barrier on a follower = %v, want ErrNotLeader", err)
	}
}

// A forwarded entry the leader cannot decode is refused before it reaches
// the log (the FSM would stop on it) and is not retried.
func TestForwardedGarbageIsRefused(t *testing.T) {
	c := startCluster(t, 3, bootJoin, nil)
	f := c.follower()
	_, err := f.applyData(testCtx(t, 10*time.Second), []byte{0x7f, '{'}, true)
	var re *remoteError
	if !errors.As(err, &re) {
		t.Fatalf("forwarded garbage: err = %v, want a remote error", err)
	}
	mustApply(t, f, setPool(2))
	c.waitConverged()
}

func TestMuxRejectsUnknownProtocol(t *testing.T) {
	c := startCluster(t, 1, bootJoin, nil)
	n := c.node(0)
	for _, tc := range []struct {
		name  string
		first []byte
	}{
		{"plain HTTP", []byte("GET / HTTP/1.1\r\n\r\n")},
		{"unknown protocol byte", []byte{0x00, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", n.Addr(), time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(tc.first); err != nil {
				t.Fatal(err)
			}
			// The mux closes the connection instead of answering.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if nread, err := conn.Read(make([]byte, 1)); err == nil {
				t.Fatalf("read %d bytes from a connection with an unknown protocol", nread)
			}
		})
	}
	// A client that never sends its protocol byte does not hold up Close.
	silent, err := net.DialTimeout("tcp", n.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	done := make(chan error, 1)
	go func() { done <- n.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(handshakeTimeout - time.Second):
		t.Fatal("Close waited for a silent connection's handshake")
	}
}
