package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// Concurrent writers lose no byte (run with -race to see the guard at work).
func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				b.Write([]byte("ab"))
			}
		}()
	}
	wg.Wait()
	if s := b.String(); len(s) != 1600 || strings.Count(s, "ab") != 800 {
		t.Fatalf("%d bytes, %d pairs", len(s), strings.Count(s, "ab"))
	}
}
