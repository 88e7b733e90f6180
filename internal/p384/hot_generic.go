//go:build !amd64 || purego

package p384

// hotTable is empty where the field arithmetic is not built: a Cache then
// holds nothing (TableBytes is 0).
type hotTable struct{}

func buildTable(*PublicKey) *hotTable { return nil }

func verifyHot(k *PublicKey, _ *hotTable, digest, r, s []byte) bool {
	return Verify(k, digest, r, s)
}
