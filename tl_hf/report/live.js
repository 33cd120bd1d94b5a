// tl-hf training monitor: inline SVG charts of a training history, redrawn when new data
// arrives. No network: the data is inline (TLHF.data); while a run trains, the page re-adds
// <script src="report.live.js"> every few seconds (classic scripts load from file://, fetch
// does not), and that file calls tlhfLiveUpdate(history). Zoom, hidden series and the
// tooltip survive updates; {final: true} means the final report replaced the page: reload.
(function(){
// the panels themselves are drawn by charts.js (TLHFCharts), shared with the lab's page
const {fmt,esc}=TLHFCharts;
// losses go to the loss panel; the calibration figures (temperature, ECE) stay in the tables
const SKIP=/^eval_(loss|scaled_loss|runtime|samples_per_second|steps_per_second|temperature|ece|scaled_ece)$/;
const S={d:TLHF.data,zoom:null,hidden:{},drag:null,mouse:null,timer:null};
const root=document.getElementById('tlhf-monitor');
const $=s=>root.querySelector(s);
const hms=s=>{s=Math.max(0,Math.round(s));const h=Math.floor(s/3600),m=Math.floor(s%3600/60);return h?`${h}h ${m}m`:m?`${m}m ${s%60}s`:`${s}s`};
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
  return P;
}
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
  const d=S.d;header(d);
  const bestE=d.best_epoch,evs=d.eval||[],stopE=(d.finished&&d.early_stopped&&evs.length)?evs[evs.length-1].epoch:null;
  const markers=[];
  if(stopE!==bestE&&bestE!=null)markers.push({e:bestE,col:'#1a7f37',lab:'best epoch '+bestE,kind:'best'});
  if(stopE!=null)markers.push({e:stopE,col:'#cf222e',lab:stopE===bestE?'best · early stop':'early stop',kind:'stop'});
  else if(!d.finished&&bestE!=null&&d.early_stopping_patience)markers.push({e:bestE+d.early_stopping_patience,col:'#cf222e',lab:'stops here without a gain',kind:'patience',op:.45});
  TLHFCharts.draw($('.tlhf-panels'),panels(d),{S,dom:xdom(d),markers,tip:document.querySelector('.tlhf-tip'),redraw:draw});
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
