// tl-hf charts: inline SVG line panels with a legend (click to hide a series), hover values,
// drag or wheel to zoom along x, double-click to reset, and dashed epoch markers. Shared by
// the live training monitor (live.js) and the lab's page (tl_hf/lab/ui). No network.
//   TLHFCharts.draw(main, panels, {S, dom, markers, tip, redraw})
// panels: [{id, title, log, h, series: [{name, pts: [[x, y, step]...], dots, color, key}]}]
// S: the caller's view state {zoom, hidden, drag, mouse}, kept across redraws.
(function(){
const PAL=['#0969da','#e16f24','#1a7f37','#8250df','#cf222e','#bf8700','#1b7c83','#d6338a','#57606a'];
const fmt=v=>v==null||!isFinite(v)?'–':(Math.abs(v)>=1e4||(v!==0&&Math.abs(v)<1e-3))?v.toExponential(2):(+v.toPrecision(4)).toString();
const esc=s=>String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function ticks(a,b,n){const st=Math.pow(10,Math.floor(Math.log10((b-a)/n||1)));const e=(b-a)/n/st;const step=st*(e>=5?10:e>=2?5:e>=1?2:1);
  const t=[];for(let v=Math.ceil(a/step)*step;v<=b+step*1e-9;v+=step)t.push(+v.toPrecision(12));return t}
function colour(P){let c=0;P.forEach(p=>p.series.forEach(s=>{s.color=s.color||PAL[c++%PAL.length];s.key=s.key||p.id+':'+s.name}));return P}
function draw(main,P,o){
  const S=o.S,W=Math.max(360,main.clientWidth),[X0,X1]=S.zoom||o.dom,redraw=o.redraw;
  main.innerHTML='';colour(P);
  for(const p of P){
    const H=p.h||240,m={l:58,r:14,t:20,b:24},pw=W-m.l-m.r,ph=H-m.t-m.b;
    const vis=p.series.filter(s=>!S.hidden[s.key]);
    const ys=[];vis.forEach(s=>s.pts.forEach(q=>{if(q[0]>=X0&&q[0]<=X1&&isFinite(q[1])&&(!p.log||q[1]>0))ys.push(q[1])}));
    let y0=Math.min(...ys),y1=Math.max(...ys);if(!ys.length){y0=p.log?1e-6:0;y1=1}
    const L=p.log?Math.log10:(v=>v);let a=L(y0),b=L(y1);if(a===b){a-=p.log?.5:Math.abs(a)*.1||.5;b+=p.log?.5:Math.abs(b)*.1||.5}
    const pad=(b-a)*.06;a-=pad;b+=pad;
    const sx=x=>m.l+(x-X0)/(X1-X0)*pw,sy=y=>m.t+(b-L(y))/(b-a)*ph,ix=px=>X0+(px-m.l)/pw*(X1-X0);
    let g=`<defs><clipPath id="tlhf-c-${p.id}"><rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}"/></clipPath></defs>`;
    const yt=p.log?Array.from({length:Math.max(0,Math.floor(b)-Math.ceil(a)+1)},(_,i)=>Math.ceil(a)+i):ticks(a,b,5);
    for(const t of yt){const y=m.t+(b-t)/(b-a)*ph;g+=`<line x1="${m.l}" x2="${m.l+pw}" y1="${y}" y2="${y}" stroke="var(--grid)"/><text x="${m.l-6}" y="${y+4}" text-anchor="end">${p.log?'1e'+t:fmt(t)}</text>`}
    for(const t of ticks(X0,X1,Math.max(2,Math.round(pw/90)))){const x=sx(t);g+=`<line x1="${x}" x2="${x}" y1="${m.t}" y2="${m.t+ph}" stroke="var(--grid)"/><text x="${x}" y="${H-6}" text-anchor="middle">${fmt(t)}</text>`}
    g+=`<text x="${m.l-8}" y="${H-6}" text-anchor="end" style="font-style:italic">epoch</text>`;
    let row=0,end=-Infinity;  // labels that would overlap the previous one go one line lower
    for(const k of (o.markers||[]).slice().sort((u,v)=>u.e-v.e)){if(k.e==null||k.e<X0||k.e>X1)continue;const x=sx(k.e),right=x>m.l+pw-90,op=k.op||1;
      const w=String(k.lab).length*6.6,x0=right?x-4-w:x+4;row=x0<end+6?row+1:0;end=Math.max(row?end:-Infinity,x0+w);
      g+=`<g class="marker" data-kind="${k.kind}"><line x1="${x}" x2="${x}" y1="${m.t}" y2="${m.t+ph}" stroke="${k.col}" stroke-width="1.5" stroke-dasharray="5 4" opacity="${op}"/><text x="${right?x-4:x+4}" y="${m.t-6+row*14}" text-anchor="${right?'end':'start'}" paint-order="stroke" stroke="#fff" stroke-width="4" style="fill:${k.col};font-weight:600;opacity:${op}">${k.lab}</text></g>`}
    g+=`<g clip-path="url(#tlhf-c-${p.id})">`;
    for(const s of vis){const pts=s.pts.filter(q=>isFinite(q[1])&&(!p.log||q[1]>0));if(!pts.length)continue;
      g+=`<g data-k="${esc(s.key)}">`;
      g+=`<polyline fill="none" stroke="${s.color}" stroke-width="1.8" stroke-linejoin="round"${s.dash?' stroke-dasharray="6 4"':''} points="${pts.map(q=>sx(q[0]).toFixed(1)+','+sy(q[1]).toFixed(1)).join(' ')}"/>`;
      if(s.dots)for(const q of pts)g+=`<circle cx="${sx(q[0])}" cy="${sy(q[1])}" r="3.5" fill="#fff" stroke="${s.color}" stroke-width="2"/>`;
      g+='</g>'}
    g+=`</g><rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#d0d7de"/><g class="hov"></g><rect class="sel" y="${m.t}" height="${ph}" fill="rgba(9,105,218,.12)" width="0"/>`;
    const div=document.createElement('div');div.className='panel';div.dataset.panel=p.id;
    div.innerHTML=`<div class="ptitle">${p.title}</div><div class="legend">${p.series.map(s=>`<span data-k="${esc(s.key)}" class="${S.hidden[s.key]?'off':''}"><i style="background:${s.color}"></i>${esc(s.name)}</span>`).join('')}</div><svg viewBox="0 0 ${W} ${H}" height="${H}">${g}</svg>`;
    main.appendChild(div);
    div.querySelectorAll('.legend span').forEach(el=>el.onclick=()=>{S.hidden[el.dataset.k]=!S.hidden[el.dataset.k];redraw()});
    const svg=div.querySelector('svg'),hov=svg.querySelector('.hov'),sel=svg.querySelector('.sel'),tip=o.tip;
    const pxOf=e=>{const r=svg.getBoundingClientRect();return(e.clientX-r.left)*W/r.width};
    svg.onmousemove=e=>{S.mouse={id:p.id,clientX:e.clientX,clientY:e.clientY};const px=pxOf(e);
      if(S.drag){const a0=Math.max(m.l,Math.min(S.drag.px,px)),a1=Math.min(m.l+pw,Math.max(S.drag.px,px));sel.setAttribute('x',a0);sel.setAttribute('width',a1-a0)}
      if(px<m.l||px>m.l+pw){hov.innerHTML='';tip.style.display='none';return}
      const x=ix(px);let rows=[],hs='',ex=null,best=Infinity;
      for(const s of vis){if(!s.pts.length)continue;let lo=0,hi=s.pts.length-1;while(hi-lo>1){const mid=(lo+hi)>>1;if(s.pts[mid][0]<x)lo=mid;else hi=mid}
        let q=null,dd=Infinity;for(const r of [s.pts[lo],s.pts[hi]])if(r){const k=Math.abs(r[0]-x);if(k<dd){dd=k;q=r}}
        if(!q||Math.abs(sx(q[0])-px)>40)continue;if(dd<best){best=dd;ex=q}
        rows.push([q[1],`<div><i style="display:inline-block;width:9px;height:9px;border-radius:5px;background:${s.color};margin-right:5px"></i>${esc(s.name)}: <b>${fmt(q[1])}</b></div>`]);
        hs+=`<circle cx="${sx(q[0])}" cy="${sy(q[1])}" r="4.5" fill="${s.color}" stroke="#fff" stroke-width="1.5"/>`}
      if(!rows.length){hov.innerHTML='';tip.style.display='none';return}
      hov.innerHTML=`<line x1="${sx(ex[0])}" x2="${sx(ex[0])}" y1="${m.t}" y2="${m.t+ph}" stroke="#8c959f" stroke-dasharray="2 3"/>`+hs;
      tip.innerHTML=`<div style="color:#656d76">epoch ${fmt(ex[0])}${ex[2]!=null?' · step '+ex[2]:''}</div>`+rows.sort((u,v)=>v[0]-u[0]).map(u=>u[1]).join('');
      tip.style.display='block';const tw=tip.offsetWidth;tip.style.left=(e.clientX+14+tw>innerWidth?e.clientX-14-tw:e.clientX+14)+'px';tip.style.top=(e.clientY+12)+'px'};
    svg.onmouseleave=()=>{S.mouse=null;hov.innerHTML='';tip.style.display='none'};
    if(S.mouse&&S.mouse.id===p.id)requestAnimationFrame(()=>svg.onmousemove(S.mouse));
    svg.onmousedown=e=>{e.preventDefault();S.drag={px:pxOf(e)}};
    svg.onmouseup=e=>{const d0=S.drag;S.drag=null;if(!d0)return;const px=pxOf(e);
      if(Math.abs(px-d0.px)>6){S.zoom=[ix(Math.max(m.l,Math.min(d0.px,px))),ix(Math.min(m.l+pw,Math.max(d0.px,px)))];redraw()}else sel.setAttribute('width',0)};
    svg.ondblclick=()=>{S.zoom=null;redraw()};
    svg.addEventListener('wheel',e=>{e.preventDefault();const[z0,z1]=S.zoom||o.dom,[f0,f1]=o.dom,c=ix(pxOf(e)),k=e.deltaY>0?1.25:0.8;
      let n0=c-(c-z0)*k,n1=c+(z1-c)*k;if(n1-n0>=f1-f0){S.zoom=null}else{if(n0<f0){n1+=f0-n0;n0=f0}if(n1>f1){n0-=n1-f1;n1=f1}S.zoom=[n0,n1]}redraw()},{passive:false});
  }
}
window.TLHFCharts={PAL,fmt,esc,ticks,draw};
})();
