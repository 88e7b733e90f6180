// Package parallel spreads independent work over all cores.
package parallel

import (
	"runtime"
	"sync"
)

// For calls f(0) … f(n-1), each exactly once, on up to GOMAXPROCS
// goroutines in contiguous chunks; below minParallel items it runs them in
// order on the calling goroutine, where starting goroutines costs more than
// it saves.
func For(n, minParallel int, f func(i int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < minParallel || workers == 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for start := 0; start < n; start += chunk {
		end := min(start+chunk, n)
		wg.Go(func() {
			for i := start; i < end; i++ {
				f(i)
			}
		})
	}
	wg.Wait()
}
