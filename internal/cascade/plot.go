package cascade

import (
	"bytes"
	"fmt"
	"image/color"
	"io"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// armStyles are the arms' colours and dashes in the plot.
var armStyles = map[string]struct {
	color  color.Color
	dashes []vg.Length
}{
	ArmControl:       {color.RGBA{R: 0xc0, G: 0x39, B: 0x2b, A: 0xff}, nil},
	ArmNoPropagation: {color.RGBA{R: 0xe6, G: 0x7e, B: 0x22, A: 0xff}, []vg.Length{vg.Points(6), vg.Points(3)}},
	ArmIATP:          {color.RGBA{R: 0x27, G: 0x60, B: 0xae, A: 0xff}, nil},
}

// WritePlot draws the cumulative number of poisoned requests that reached
// an irreversible action after each round, one line per arm (the control
// arm's is also what the bad agents sent), and writes it as PNG.
func (res *Result) WritePlot(w io.Writer) error {
	p := plot.New()
	c := res.Config
	p.Title.Text = fmt.Sprintf("Poisoned requests that reached an irreversible action\n%d agents, F = %s, H = %s, R = %s, P = %s, seed %d",
		c.Agents, pct(c.BadShare), num(c.Hallucination), num(c.Recall), num(c.FalsePositive), c.Seed)
	p.X.Label.Text = fmt.Sprintf("round (%d requests each)", res.Layers[RoleEntry.String()])
	p.Y.Label.Text = "cumulative poisoned actions"
	p.X.Min, p.Y.Min = 0, 0
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	for _, a := range res.Arms {
		pts := plotter.XYs{{}}
		for i, n := range a.Cumulative {
			pts = append(pts, plotter.XY{X: float64(i + 1), Y: float64(n)})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		st := armStyles[a.Name]
		l.Color, l.Dashes, l.Width = st.color, st.dashes, vg.Points(2)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s: %d", armTitles[a.Name], a.PoisonedActions), l)
	}
	p.Legend.ThumbnailWidth = vg.Points(24)
	wt, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}
