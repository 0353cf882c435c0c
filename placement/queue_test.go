package placement

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWorkQueueHandsOutAKeyOnceAtATime(t *testing.T) {
	q := newWorkQueue(newFakeClock())
	a, b := sandboxKey("a"), sandboxKey("b")
	q.add(a)
	q.add(a)
	q.add(b)
	if n := q.len(); n != 2 {
		t.Fatalf("queued %d keys after adding a twice and b once, want 2", n)
	}
	k, _ := q.get()
	if k != a {
		t.Fatalf("first key %v, want %v (order of adding)", k, a)
	}
	// a changes again while a worker holds it: not handed to a second one.
	q.add(a)
	if k2, _ := q.get(); k2 != b {
		t.Fatalf("second key %v, want %v: a is held", k2, b)
	}
	if n := q.len(); n != 0 {
		t.Fatalf("queued %d keys while a is held, want 0", n)
	}
	q.done(a)
	if n := q.len(); n != 1 {
		t.Fatalf("a added while held is not queued again once done (%d queued)", n)
	}
	if k3, _ := q.get(); k3 != a {
		t.Fatalf("third key %v, want %v", k3, a)
	}
}

func TestWorkQueueTimersKeepTheEarliestDeadline(t *testing.T) {
	c := newFakeClock()
	q := newWorkQueue(c)
	k := sessionKey("s")
	q.addAfter(k, 10*time.Minute)
	q.addAfter(k, 5*time.Minute)  // earlier: replaces
	q.addAfter(k, 20*time.Minute) // later: ignored
	if n := c.Pending(); n != 1 {
		t.Fatalf("%d timers set for one key, want 1", n)
	}
	c.Advance(4 * time.Minute)
	time.Sleep(10 * time.Millisecond)
	if n := q.len(); n != 0 {
		t.Fatalf("key queued after 4 of 5 minutes")
	}
	c.Advance(time.Minute)
	deadline := time.Now().Add(2 * time.Second)
	for q.len() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got, _ := q.get(); got != k {
		t.Fatalf("got %v at the deadline, want %v", got, k)
	}
}

func TestWorkQueueRetryBacksOff(t *testing.T) {
	c := newFakeClock()
	q := newWorkQueue(c)
	k := sandboxKey("x")
	for i, want := range []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 250 * time.Millisecond} {
		q.retry(k, 250*time.Millisecond)
		c.Advance(want - time.Millisecond)
		time.Sleep(5 * time.Millisecond)
		if q.len() != 0 {
			t.Fatalf("retry %d came before %v", i+1, want)
		}
		c.Advance(time.Millisecond)
		deadline := time.Now().Add(2 * time.Second)
		for q.len() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		got, _ := q.get()
		q.done(got)
		if got != k {
			t.Fatalf("retry %d: got %v", i+1, got)
		}
	}
	q.succeeded(k)
	q.retry(k, time.Second)
	c.Advance(50 * time.Millisecond)
	deadline := time.Now().Add(2 * time.Second)
	for q.len() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if q.len() != 1 {
		t.Fatal("after a success the backoff did not start again at 50 ms")
	}
}

// TestWorkQueueSerialisesEachKey runs many workers over keys added from
// many goroutines: no key is ever held by two workers at once, and every
// key added is worked on after its last add.
func TestWorkQueueSerialisesEachKey(t *testing.T) {
	q := newWorkQueue(newFakeClock())
	const keys, adds = 20, 2000
	var held [keys]atomic.Int32
	var lastAdd, lastWork [keys]atomic.Int64
	var seq atomic.Int64
	var overlap atomic.Bool
	var workers sync.WaitGroup
	for w := 0; w < 8; w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				k, ok := q.get()
				if !ok {
					return
				}
				i := int(k.id[0] - 'a')
				if held[i].Add(1) != 1 {
					overlap.Store(true)
				}
				lastWork[i].Store(seq.Add(1))
				time.Sleep(50 * time.Microsecond)
				held[i].Add(-1)
				q.done(k)
			}
		}()
	}
	var adders sync.WaitGroup
	for g := 0; g < 4; g++ {
		adders.Add(1)
		go func(g int) {
			defer adders.Done()
			for n := 0; n < adds/4; n++ {
				i := (n*7 + g) % keys
				lastAdd[i].Store(seq.Add(1))
				q.add(sandboxKey(string(rune('a' + i))))
			}
		}(g)
	}
	adders.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		behind := 0
		for i := 0; i < keys; i++ {
			if lastWork[i].Load() < lastAdd[i].Load() {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d keys were added and never worked on after", behind)
		}
		time.Sleep(time.Millisecond)
	}
	q.shutdown()
	workers.Wait()
	if overlap.Load() {
		t.Fatal("a key was held by two workers at once")
	}
}
