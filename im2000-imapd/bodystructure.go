package main

// BODYSTRUCTURE, computed by a bounded walker over the message instead of
// the library's ExtractBodyStructure: that one reads every single part,
// message/rfc822 included, into memory and parses the copy again, so a
// message of nested message/rfc822 parts costs memory quadratic in its
// size (a 256 KB message took 1.4 GiB; 1 MB exhausted the process and
// every session in it), and nested multiparts cost CPU the same way.
// Here each part is streamed once through counters; nesting past
// maxNesting and parts past maxParts are described as the opaque octets
// they are. A session keeps what it computed (cache.structure), so a
// client asking again costs nothing more.

import (
	"bufio"
	"bytes"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
)

const (
	// maxNesting bounds how deep multiparts and message/rfc822 parts are
	// described (each level scans what it holds once more); mail clients
	// nest a forwarded message in a multipart or two, never dozens.
	maxNesting = 24
	// maxParts bounds the parts described in one message; the rest are
	// left out of the structure (still counted in their parents' sizes).
	maxParts = 2000
)

// bodyStructure is the message's structure, with a multipart that has no
// parts (a boundary that never comes: the library would panic writing it)
// described as the opaque single part it is.
func bodyStructure(data []byte) imap.BodyStructure {
	br := bufio.NewReader(bytes.NewReader(data))
	h, _ := textproto.ReadHeader(br)
	w := &walker{}
	return mend(w.part(h, br, 0))
}

type walker struct{ parts int }

// counter counts the octets and lines read through it.
type counter struct {
	r     io.Reader
	n     int64
	lines int64
}

func (c *counter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	c.lines += int64(bytes.Count(b[:n], []byte("\n")))
	return n, err
}

// endReader ends a part at any error reading it, as the library's
// walker does (it reads each part whole and ignores the error): a part
// whose multipart never closes ends at the message's end, not in error.
type endReader struct{ r io.Reader }

func (e endReader) Read(b []byte) (int, error) {
	n, err := e.r.Read(b)
	if err != nil {
		err = io.EOF
	}
	return n, err
}

// part describes one part of header rawHeader and body r, nested depth
// levels deep, reading r to its end.
func (w *walker) part(rawHeader textproto.Header, r io.Reader, depth int) imap.BodyStructure {
	w.parts++
	header := gomessage.Header{Header: rawHeader}
	mediaType, typeParams, _ := header.ContentType()
	primaryType, subType, _ := strings.Cut(mediaType, "/")
	opaque := depth >= maxNesting || w.parts > maxParts
	if primaryType == "multipart" && !opaque {
		bs := &imap.BodyStructureMultiPart{Subtype: subType}
		mr := textproto.NewMultipartReader(r, typeParams["boundary"])
		for {
			p, _ := mr.NextPart()
			if p == nil {
				break
			}
			child := w.part(p.Header, p, depth+1)
			if w.parts <= maxParts {
				bs.Children = append(bs.Children, child)
			}
		}
		io.Copy(io.Discard, r) // the epilogue
		bs.Extended = &imap.BodyStructureMultiPartExt{
			Params:      typeParams,
			Disposition: disposition(header),
			Language:    language(header),
			Location:    header.Get("Content-Location"),
		}
		return bs
	}
	if opaque && (primaryType == "multipart" || mediaType == "message/rfc822" || mediaType == "message/global") {
		primaryType, subType, mediaType, typeParams = "application", "octet-stream", "application/octet-stream", nil
	}
	c := &counter{r: endReader{r}}
	bs := &imap.BodyStructureSinglePart{
		Type:        primaryType,
		Subtype:     subType,
		Params:      typeParams,
		ID:          header.Get("Content-Id"),
		Description: header.Get("Content-Description"),
		Encoding:    header.Get("Content-Transfer-Encoding"),
	}
	if mediaType == "message/rfc822" || mediaType == "message/global" {
		br := bufio.NewReader(c)
		childHeader, _ := textproto.ReadHeader(br)
		bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{
			Envelope:      imapserver.ExtractEnvelope(childHeader),
			BodyStructure: w.part(childHeader, br, depth+1),
		}
	}
	io.Copy(io.Discard, c)
	bs.Size = uint32(c.n)
	if bs.MessageRFC822 != nil {
		bs.MessageRFC822.NumLines = c.lines
	}
	if primaryType == "text" {
		bs.Text = &imap.BodyStructureText{NumLines: c.lines}
	}
	bs.Extended = &imap.BodyStructureSinglePartExt{
		Disposition: disposition(header),
		Language:    language(header),
		Location:    header.Get("Content-Location"),
	}
	return bs
}

func disposition(header gomessage.Header) *imap.BodyStructureDisposition {
	disp, params, _ := header.ContentDisposition()
	if disp == "" {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: disp, Params: params}
}

func language(header gomessage.Header) []string {
	v := header.Get("Content-Language")
	if v == "" {
		return nil
	}
	l := strings.Split(v, ",")
	for i, lang := range l {
		l[i] = strings.TrimSpace(lang)
	}
	return l
}

func mend(bs imap.BodyStructure) imap.BodyStructure {
	switch b := bs.(type) {
	case *imap.BodyStructureMultiPart:
		if len(b.Children) == 0 {
			// Extended: BODYSTRUCTURE asks for it (the library panics
			// writing a structure without it).
			return &imap.BodyStructureSinglePart{Type: "application", Subtype: "octet-stream", Encoding: "7bit",
				Extended: &imap.BodyStructureSinglePartExt{}}
		}
		for i, c := range b.Children {
			b.Children[i] = mend(c)
		}
	case *imap.BodyStructureSinglePart:
		if b.MessageRFC822 != nil && b.MessageRFC822.BodyStructure != nil {
			b.MessageRFC822.BodyStructure = mend(b.MessageRFC822.BodyStructure)
		}
	case nil:
		return &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain", Encoding: "7bit",
			Extended: &imap.BodyStructureSinglePartExt{}}
	}
	return bs
}

// headerGivesStructure reports whether a header alone gives its
// message's structure: not for a multipart or an encapsulated message,
// whose parts are in the body. Only the header is read (the library's
// ExtractBodyStructure here read whatever a store sent after it).
func headerGivesStructure(raw []byte) bool {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	header := gomessage.Header{Header: h}
	mediaType, _, _ := header.ContentType()
	primary, sub, _ := strings.Cut(mediaType, "/")
	return primary != "multipart" && !(primary == "message" && (sub == "rfc822" || sub == "global"))
}

// headerCut passes on a header up to (not including) the blank line
// that ends it and discards the rest; n counts the octets passed on.
type headerCut struct {
	w     io.Writer
	n     int64
	start bool // at a line's start
	cr    bool // a CR at a line's start, held
	done  bool
}

func (h *headerCut) Write(b []byte) (int, error) {
	if h.done {
		return len(b), nil
	}
	out := make([]byte, 0, len(b)+1)
	for _, c := range b {
		if h.cr {
			h.cr = false
			if c == '\n' {
				h.done = true
				break
			}
			out, h.start = append(out, '\r'), false
		}
		if h.start && (c == '\r' || c == '\n') {
			if h.done = c == '\n'; h.done {
				break
			}
			h.cr = true
			continue
		}
		out = append(out, c)
		h.start = c == '\n'
	}
	n, err := h.w.Write(out)
	h.n += int64(n)
	if err != nil {
		return 0, err
	}
	return len(b), nil
}
