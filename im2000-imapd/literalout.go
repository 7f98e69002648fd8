package main

// outFollow follows the library's output for literalGuard: where its
// lines start, whatever the writes split or join, and which octets are
// a literal's (a message's body may hold "c2 NO" or "+ Ready for literal
// data" at a line's start and must not count as the library's words).
type outFollow struct {
	head []byte // the line's first octets, up to headLen
	tail []byte // its last tailLen octets, for a literal's "{n}"
	skip int64  // octets of a literal still to come
}

// headLen holds a tag of maxTag octets and its space, and contReq.
const headLen = maxTag + 1

// follow walks b and calls line with the start of each line the library
// wrote outside its literals.
func (o *outFollow) follow(b []byte, line func(head []byte)) {
	for len(b) > 0 {
		if o.skip > 0 {
			k := min(o.skip, int64(len(b)))
			o.skip -= k
			b = b[k:]
			continue
		}
		c := b[0]
		b = b[1:]
		if c != '\n' {
			if len(o.head) < headLen {
				o.head = append(o.head, c)
			}
			if len(o.tail) == tailLen {
				copy(o.tail, o.tail[1:])
				o.tail = o.tail[:tailLen-1]
			}
			o.tail = append(o.tail, c)
			continue
		}
		line(o.head)
		if size, _, ok := literalHeader(o.tail); ok {
			o.skip = size
		}
		o.head, o.tail = o.head[:0], o.tail[:0]
	}
}
