package agent

// slots is a counting semaphore that never waits: a request over the bound
// is refused at once rather than queued behind streams that may last hours.
type slots struct{ c chan struct{} }

func newSlots(n int) *slots { return &slots{c: make(chan struct{}, n)} }

// TryAcquire takes a slot, or reports false when all are taken.
func (s *slots) TryAcquire() bool {
	select {
	case s.c <- struct{}{}:
		return true
	default:
		return false
	}
}

// Release gives back a slot taken by TryAcquire.
func (s *slots) Release() { <-s.c }
