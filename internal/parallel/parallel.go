// Package parallel spreads CPU-bound work over the machine's cores.
package parallel

import (
	"runtime"
	"sync"
)

// MinPerWorker is the fewest items worth a goroutine of their own: below
// it the goroutines cost more than they save.
const MinPerWorker = 2048

// Each calls f(i) for every i in [0, n), split into one contiguous range
// per CPU when n is large enough, and returns when every call has. A term
// decodes and validates every stored node when it starts (100,000 jobs:
// over a second of CPU), and a takeover waits for it, so it uses every
// core. f must touch only what belongs to index i.
func Each(n int, f func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n/MinPerWorker)
	if workers < 2 {
		for i := range n {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				f(i)
			}
		}()
	}
	wg.Wait()
}
