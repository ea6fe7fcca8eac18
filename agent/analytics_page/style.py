"""The analytics pages' one style block (its SHA-256 is the only style the pages' CSP allows).

The colours are the status page's (agent/status/page.py), light and dark. The charts are coloured by
class (`s0`..`s7` for series, `r0`..`r10` for retention cells), never by a style attribute: the CSP
allows no inline style.
"""

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#fff;--card:#f6f8fa;--accent:#0969da;--accent-bg:#ddf4ff;
--good:#1a7f37;--good-bg:#dafbe1;--bad:#cf222e;--bad-bg:#ffebe9;--warn:#9a6700;--warn-bg:#fff8c5;
--s0:#0969da;--s1:#bf3989;--s2:#1a7f37;--s3:#bc4c00;--s4:#8250df;--s5:#0a7d8c;--s6:#9a6700;--s7:#57606a;
--heat:9,105,218}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--bg:#0d1117;--card:#151b23;
--accent:#4493f8;--accent-bg:#0c2d6b;--good:#3fb950;--good-bg:#12261e;--bad:#f85149;--bad-bg:#2d1214;
--warn:#d29922;--warn-bg:#272115;--s0:#4493f8;--s1:#db61a2;--s2:#3fb950;--s3:#db6d28;--s4:#a371f7;
--s5:#39c5cf;--s6:#d29922;--s7:#9198a1;--heat:68,147,248}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:1280px;padding:0 1rem 2rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif;color:var(--fg);background:var(--bg)}
header{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.2rem;padding:.8rem 0;
border-bottom:1px solid var(--line)}
h1{font-size:1.25rem;margin:0}h2{font-size:1.1rem;margin:1.6rem 0 .5rem}h3{font-size:.95rem;margin:.8rem 0 .4rem}
.tabs{display:flex;gap:.3rem;flex-wrap:wrap}
.tabs a{padding:.25rem .7rem;border-radius:1rem;text-decoration:none;color:var(--muted);font-weight:600}
.tabs a[aria-current]{color:var(--accent);background:var(--accent-bg)}
.signout{margin-left:auto}
button,.button{font:inherit;font-size:.9rem;padding:.3rem .8rem;border:1px solid var(--line);border-radius:.4rem;
background:var(--card);color:var(--fg);cursor:pointer}
button.primary{background:var(--accent);border-color:var(--accent);color:#fff}
input,select{font:inherit;font-size:.9rem;padding:.3rem .45rem;border:1px solid var(--line);border-radius:.4rem;
background:var(--bg);color:var(--fg);max-width:100%}
label{display:inline-flex;flex-direction:column;gap:.15rem;font-size:.8rem;color:var(--muted);font-weight:600}
.meta,.empty,.none,.note,.sub{color:var(--muted);font-size:.85rem}.meta{margin:.1rem 0 .6rem}
.error{color:var(--bad);background:var(--bad-bg);padding:.5rem .8rem;border-radius:.4rem}
.note{background:var(--warn-bg);color:var(--warn);padding:.5rem .8rem;border-radius:.4rem}
.toolbar{display:flex;flex-wrap:wrap;align-items:flex-end;gap:.6rem 1rem;margin:.9rem 0}
.ranges{display:flex;gap:.25rem}
.ranges a{padding:.25rem .6rem;border:1px solid var(--line);border-radius:.4rem;text-decoration:none;color:var(--fg)}
.ranges a[aria-current]{background:var(--accent);border-color:var(--accent);color:#fff}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.6rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:.6rem;padding:.6rem .8rem}
.card .value{font-size:1.5rem;font-weight:700;font-variant-numeric:tabular-nums;line-height:1.2}
.card .label{font-size:.8rem;color:var(--muted);font-weight:600}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,480px),1fr));gap:0 1.5rem}
.bars{display:grid;grid-template-columns:minmax(6rem,max-content) minmax(60px,1fr) max-content;gap:.35rem .6rem;
align-items:center}
.bars .bar-label{overflow-wrap:anywhere;font-size:.85rem}
.bars .bar-value{font-variant-numeric:tabular-nums;font-size:.85rem;text-align:right}
svg.bar{width:100%;height:1.1rem;display:block}
svg.bar .track{fill:var(--card);stroke:var(--line);stroke-width:.3}
svg.bar .fill{fill:var(--accent)}svg.bar .fill2{fill:var(--good)}
svg.bar .fill.bad{fill:var(--bad)}
svg.chart{width:100%;height:auto;display:block;font-size:13px}
svg.chart .grid{stroke:var(--line);stroke-width:1}
svg.chart .axis{fill:var(--muted)}
svg.chart .line{fill:none;stroke-width:2.2;stroke-linejoin:round;stroke-linecap:round}
.s0{--c:var(--s0)}.s1{--c:var(--s1)}.s2{--c:var(--s2)}.s3{--c:var(--s3)}.s4{--c:var(--s4)}.s5{--c:var(--s5)}
.s6{--c:var(--s6)}.s7{--c:var(--s7)}
svg.chart .line{stroke:var(--c)}svg.chart .dot{fill:var(--c)}
.legend{display:flex;flex-wrap:wrap;gap:.3rem .9rem;list-style:none;padding:0;margin:.4rem 0;font-size:.85rem}
.legend li::before{content:"";display:inline-block;width:.8rem;height:.8rem;border-radius:.2rem;margin-right:.35rem;
vertical-align:-.1rem;background:var(--c)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:.4rem .55rem;border-bottom:1px solid var(--line)}
th{font-size:.8rem;color:var(--muted);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.id{overflow-wrap:anywhere;word-break:break-word}
.scroll{overflow-x:auto}
details.more summary{cursor:pointer;color:var(--accent);font-size:.85rem;padding:.4rem 0}
table.retention th.num{text-align:center}
table.retention td{text-align:center;font-variant-numeric:tabular-nums;font-size:.85rem;white-space:nowrap}
table.retention td.cohort{text-align:left}
table.retention td small{display:block;color:var(--muted);font-size:.7rem}
.r0{background:rgba(var(--heat),.04)}.r1{background:rgba(var(--heat),.1)}.r2{background:rgba(var(--heat),.17)}
.r3{background:rgba(var(--heat),.24)}.r4{background:rgba(var(--heat),.31)}.r5{background:rgba(var(--heat),.38)}
.r6{background:rgba(var(--heat),.45)}.r7{background:rgba(var(--heat),.52)}.r8{background:rgba(var(--heat),.6)}
.r9{background:rgba(var(--heat),.68)}.r10{background:rgba(var(--heat),.78);color:#fff}
form.insight{background:var(--card);border:1px solid var(--line);border-radius:.6rem;padding:.7rem .9rem}
form.insight fieldset{border:0;padding:0;margin:0;display:flex;flex-wrap:wrap;gap:.5rem .8rem;align-items:flex-end}
.signin{max-width:24rem;margin:3rem auto;background:var(--card);border:1px solid var(--line);border-radius:.6rem;
padding:1rem 1.2rem}
.signin label{display:flex;margin:.6rem 0}.signin input{width:100%}
a{color:var(--accent)}
@media (max-width:720px){
body{padding:0 .6rem 1.5rem;font-size:14px}
.cards{grid-template-columns:repeat(2,minmax(0,1fr))}
.card .value{font-size:1.25rem}
table.data,table.data tbody{display:block}
table.data thead{display:none}
table.data tr{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));column-gap:.6rem;background:var(--card);
border:1px solid var(--line);border-radius:.6rem;margin:0 0 .5rem;padding:.3rem .6rem}
table.data td{display:block;border:0;padding:.2rem 0;text-align:left}
table.data td:first-child{grid-column:1/-1;font-weight:600}
table.data td::before{content:attr(data-label);display:block;color:var(--muted);font-size:.7rem;font-weight:600;
text-transform:uppercase;letter-spacing:.03em}
table.data td:first-child::before{content:none}
.bars{grid-template-columns:minmax(5rem,38%) minmax(40px,1fr) max-content}
svg.chart{font-size:18px}
}
"""
