package displaytest

import (
	"image"
	"strings"

	"periph.io/x/devices/v3/ssd1306/image1bit"

	"github.com/latchdoor/latch/door/display"
)

// Unreadable stands for a cell of an OLED image that holds no character
// display.TextImage draws.
const Unreadable = '\uFFFD'

// ReadText reads back the two lines of text in an image of an OLED
// (OLED.Image) that display.OLED drew: each cell is matched against every
// printable ASCII character as display.TextImage draws it. Cells that
// match none are Unreadable. An image of another size reads as two lines
// of Unreadable.
func ReadText(img *image1bit.VerticalLSB) [2]string {
	h := img.Rect.Dy()
	var out [2][]rune
	refs := make([]*image1bit.VerticalLSB, 0, 0x7F-0x20)
	if img.Rect.Min == (image.Point{}) && img.Rect.Dx() == display.OLEDWidth {
		for c := byte(0x20); c < 0x7F; c++ {
			line := strings.Repeat(string(rune(c)), display.Width)
			ref, err := display.TextImage([2]string{line, line}, h)
			if err != nil {
				break
			}
			refs = append(refs, ref)
		}
	}
	for i := range out {
		for col := range display.Width {
			r := Unreadable
			cell := display.TextCell(h, i, col)
			for k, ref := range refs {
				if sameCell(img, ref, cell) {
					r = rune(0x20 + k)
					break
				}
			}
			out[i] = append(out[i], r)
		}
	}
	return [2]string{string(out[0]), string(out[1])}
}

// sameCell reports whether a and b have the same pixels in r.
func sameCell(a, b *image1bit.VerticalLSB, r image.Rectangle) bool {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if a.BitAt(x, y) != b.BitAt(x, y) {
				return false
			}
		}
	}
	return true
}
