package csvlist

// field is one element of a CSV record, as Python's csv.reader (default
// dialect, strict off) splits it.
type field struct {
	text      []byte
	line, col int  // 1-based; col counts bytes
	index     int  // position in its record
	last      bool // the record's last field
}

// scanFields calls fn for every field of data, in order, until fn returns
// false. Records end at "\n", "\r\n" or "\r"; a blank line is a record with
// no fields. A field that starts with '"' is quoted: it runs to the next
// lone '"', and '""' inside stands for '"'; as in Python, characters after
// the closing quote are kept. Unlike encoding/csv it keeps no record in
// memory, so a one-line file of millions of keys streams.
func scanFields(data []byte, fn func(f field) bool) {
	line, lineStart := 1, 0
	i := 0
	for i < len(data) {
		// A record starts here. A blank line has no fields.
		if data[i] == '\n' || data[i] == '\r' {
			i = skipEOL(data, i)
			line++
			lineStart = i
			continue
		}
		for index := 0; ; index++ {
			f := field{line: line, col: i - lineStart + 1, index: index}
			var text []byte
			quoted := i < len(data) && data[i] == '"'
			if quoted {
				i++
				for i < len(data) {
					c := data[i]
					if c == '"' {
						if i+1 < len(data) && data[i+1] == '"' {
							text = append(text, '"')
							i += 2
							continue
						}
						i++
						break
					}
					if c == '\n' {
						line++
						lineStart = i + 1
					}
					text = append(text, c)
					i++
				}
			}
			start := i
			for i < len(data) && data[i] != ',' && data[i] != '\n' && data[i] != '\r' {
				i++
			}
			if quoted {
				f.text = append(text, data[start:i]...)
			} else {
				f.text = data[start:i]
			}
			f.last = i >= len(data) || data[i] != ','
			if !fn(f) {
				return
			}
			if f.last {
				break
			}
			i++ // the comma
		}
		if i < len(data) {
			i = skipEOL(data, i)
			line++
			lineStart = i
		}
	}
}

func skipEOL(data []byte, i int) int {
	if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
		return i + 2
	}
	return i + 1
}
