// tl-hf training monitor: inline SVG charts of a training history, redrawn when new data
// arrives. No network: the data is inline (TLHF.data); while a run trains, the page re-adds
// <script src="report.live.js"> every few seconds (classic scripts load from file://, fetch
// does not), and that file calls tlhfLiveUpdate(history). Zoom, hidden series and the
// tooltip survive updates; {final: true} means the final report replaced the page: reload.
(function(){
const PAL=['#0969da','#e16f24','#1a7f37','#8250df','#cf222e','#bf8700','#1b7c83','#d6338a','#57606a'];
// losses go to the loss panel; the calibration figures (temperature, ECE) stay in the tables
const SKIP=/^eval_(loss|scaled_loss|runtime|samples_per_second|steps_per_second|temperature|ece|scaled_ece)$/;
const S={d:TLHF.data,zoom:null,hidden:{},drag:null,mouse:null,timer:null};
const root=document.getElementById('tlhf-monitor');
const $=s=>root.querySelector(s);
const fmt=v=>v==null||!isFinite(v)?'–':(Math.abs(v)>=1e4||(v!==0&&Math.abs(v)<1e-3))?v.toExponential(2):(+v.toPrecision(4)).toString();
const hms=s=>{s=Math.max(0,Math.round(s));const h=Math.floor(s/3600),m=Math.floor(s%3600/60);return h?`${h}h ${m}m`:m?`${m}m ${s%60}s`:`${s}s`};
const esc=s=>String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
function panels(d){
  const tr=d.train||[],ev=d.eval||[],lr=d.learning_rates||[];
  const P=[{id:'loss',title:'Loss (train per logging step, validation per epoch)',series:[
     {name:'train loss',pts:tr.filter(r=>r.loss!=null).map(r=>[r.epoch,r.loss,r.step])},
     {name:'validation loss',pts:ev.filter(r=>r.eval_loss!=null).map(r=>[r.epoch,r.eval_loss,r.step]),dots:1}]}];
  const scaled=ev.filter(r=>r.eval_scaled_loss!=null).map(r=>[r.epoch,r.eval_scaled_loss,r.step]);
  if(scaled.length)P[0].series.push({name:'validation loss after temperature scaling',pts:scaled,dots:1});
  const keys=[...new Set(ev.flatMap(r=>Object.keys(r)))].filter(k=>k.startsWith('eval_')&&!SKIP.test(k));
  if(keys.length)P.push({id:'val',title:'Validation metrics (per epoch)',series:keys.map(k=>({name:k.slice(5),pts:ev.filter(r=>r[k]!=null).map(r=>[r.epoch,r[k],r.step]),dots:1}))});
  const groups=[...new Set(lr.flatMap(r=>Object.keys(r.lr||{})))];
  if(groups.length)P.push({id:'lr',title:'Learning rate per parameter group (log scale)',log:1,h:200,series:groups.map(g=>({name:g,pts:lr.filter(r=>r.lr&&r.lr[g]>0).map(r=>[r.epoch,r.lr[g],r.step])}))});
  let c=0;P.forEach(p=>p.series.forEach(s=>{s.color=PAL[c++%PAL.length];s.key=p.id+':'+s.name}));
  return P;
}
function ticks(a,b,n){const st=Math.pow(10,Math.floor(Math.log10((b-a)/n||1)));const e=(b-a)/n/st;const step=st*(e>=5?10:e>=2?5:e>=1?2:1);
  const t=[];for(let v=Math.ceil(a/step)*step;v<=b+step*1e-9;v+=step)t.push(+v.toPrecision(12));return t}
function xdom(d){let hi=d.num_train_epochs||0;for(const r of [...(d.train||[]),...(d.eval||[])])hi=Math.max(hi,r.epoch||0);return[0,hi||1]}
function status(d){
  if(d.final||d.finished)return d.early_stopped?['stop','early-stopped']:d.final?['done','finished']:['eval','training done · evaluating'];
  return['run','running'];
}
function header(d){
  const tr=d.train||[],last=tr[tr.length-1]||{},ev=d.eval||[],[cls,word]=status(d);
  const lastEv=ev[ev.length-1]||{},at=(lastEv.step||0)>(last.step||0)?lastEv:last;  // the latest record
  const kv=(k,v)=>`<span class="kv">${k} <b>${v}</b></span>`;
  let h=`<span class="badge ${cls}">${word}</span>`;
  h+=kv('epoch',fmt(d.epoch??at.epoch??0)+(d.num_train_epochs?' / '+fmt(d.num_train_epochs):''));
  h+=kv('step',(d.step??at.step??0)+(d.max_steps?' / '+d.max_steps:''));
  h+=kv('train loss',fmt(last.loss));
  if(ev.length){const m=d.metric_for_best_model||'eval_loss';h+=kv('best epoch',d.best_epoch??'–')+kv('best '+esc(m.replace(/^eval_/,'')),fmt(d.best_metric));}
  if(d.early_stopping_patience)h+=kv('patience left',`${d.patience_left??d.early_stopping_patience} / ${d.early_stopping_patience}`);
  if(d.elapsed_s!=null){h+=kv('elapsed',hms(d.elapsed_s));if(!d.finished&&d.eta_s!=null)h+=kv('ETA',hms(d.eta_s));}
  if(d.updated_at&&!d.final)h+=kv('updated',esc(d.updated_at));
  $('.tlhf-head').innerHTML=h;
}
function draw(){
  const d=S.d;header(d);const P=panels(d),main=$('.tlhf-panels'),W=Math.max(360,main.clientWidth);
  const [X0,X1]=S.zoom||xdom(d);main.innerHTML='';
  const bestE=d.best_epoch,evs=d.eval||[],stopE=(d.finished&&d.early_stopped&&evs.length)?evs[evs.length-1].epoch:null;
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
    const mark=(e,col,lab,kind,op)=>{if(e==null||e<X0||e>X1)return'';const x=sx(e),right=x>m.l+pw-90;
      return`<g class="marker" data-kind="${kind}"><line x1="${x}" x2="${x}" y1="${m.t}" y2="${m.t+ph}" stroke="${col}" stroke-width="1.5" stroke-dasharray="5 4" opacity="${op||1}"/><text x="${right?x-4:x+4}" y="${m.t-6}" text-anchor="${right?'end':'start'}" paint-order="stroke" stroke="#fff" stroke-width="4" style="fill:${col};font-weight:600;opacity:${op||1}">${lab}</text></g>`};
    if(stopE!==bestE)g+=mark(bestE,'#1a7f37','best epoch '+bestE,'best');
    if(stopE!=null)g+=mark(stopE,'#cf222e',stopE===bestE?'best · early stop':'early stop','stop');
    else if(!d.finished&&bestE!=null&&d.early_stopping_patience)g+=mark(bestE+d.early_stopping_patience,'#cf222e','stops here without a gain','patience',.45);
    g+=`<g clip-path="url(#tlhf-c-${p.id})">`;
    for(const s of vis){const pts=s.pts.filter(q=>isFinite(q[1])&&(!p.log||q[1]>0));if(!pts.length)continue;
      g+=`<polyline fill="none" stroke="${s.color}" stroke-width="1.8" stroke-linejoin="round" points="${pts.map(q=>sx(q[0]).toFixed(1)+','+sy(q[1]).toFixed(1)).join(' ')}"/>`;
      if(s.dots)for(const q of pts)g+=`<circle cx="${sx(q[0])}" cy="${sy(q[1])}" r="3.5" fill="#fff" stroke="${s.color}" stroke-width="2"/>`}
    g+=`</g><rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#d0d7de"/><g class="hov"></g><rect class="sel" y="${m.t}" height="${ph}" fill="rgba(9,105,218,.12)" width="0"/>`;
    const div=document.createElement('div');div.className='panel';div.dataset.panel=p.id;
    div.innerHTML=`<div class="ptitle">${p.title}</div><div class="legend">${p.series.map(s=>`<span data-k="${esc(s.key)}" class="${S.hidden[s.key]?'off':''}"><i style="background:${s.color}"></i>${esc(s.name)}</span>`).join('')}</div><svg viewBox="0 0 ${W} ${H}" height="${H}">${g}</svg>`;
    main.appendChild(div);
    div.querySelectorAll('.legend span').forEach(el=>el.onclick=()=>{S.hidden[el.dataset.k]=!S.hidden[el.dataset.k];draw()});
    const svg=div.querySelector('svg'),hov=svg.querySelector('.hov'),sel=svg.querySelector('.sel'),tip=document.querySelector('.tlhf-tip');
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
      if(Math.abs(px-d0.px)>6){S.zoom=[ix(Math.max(m.l,Math.min(d0.px,px))),ix(Math.min(m.l+pw,Math.max(d0.px,px)))];draw()}else sel.setAttribute('width',0)};
    svg.ondblclick=()=>{S.zoom=null;draw()};
    svg.addEventListener('wheel',e=>{e.preventDefault();const[z0,z1]=S.zoom||xdom(S.d),[f0,f1]=xdom(S.d),c=ix(pxOf(e)),k=e.deltaY>0?1.25:0.8;
      let n0=c-(c-z0)*k,n1=c+(z1-c)*k;if(n1-n0>=f1-f0){S.zoom=null}else{if(n0<f0){n1+=f0-n0;n0=f0}if(n1>f1){n0-=n1-f1;n1=f1}S.zoom=[n0,n1]}draw()},{passive:false});
  }
  $('.hint').textContent='Hover for values · click a legend entry to hide it · drag or wheel to zoom · double-click to reset'+(S.zoom?` · zoom: epoch ${fmt(S.zoom[0])}–${fmt(S.zoom[1])}`:'');
}
window.tlhfLiveUpdate=d=>{
  if(d.final){if(S.timer)clearInterval(S.timer);location.reload();return}
  S.d=d;draw();
};
addEventListener('resize',draw);addEventListener('mouseup',()=>{if(S.drag){S.drag=null;draw()}});
draw();
if(TLHF.live)S.timer=setInterval(()=>{const s=document.createElement('script');s.src=TLHF.live+'?t='+Date.now();s.onload=s.onerror=()=>s.remove();document.head.appendChild(s)},TLHF.refreshMs);
})();
