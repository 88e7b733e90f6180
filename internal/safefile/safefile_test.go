package safefile

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSize(t *testing.T) {
	assert.Equal(t, "512 MiB", Size(512<<20))
	assert.Equal(t, "64 KiB", Size(64<<10))
	assert.Equal(t, "100 bytes", Size(100))
}
