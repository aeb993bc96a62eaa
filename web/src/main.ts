// The rma page: wires the job list (jobs.ts), the result panel (results.ts), photo conversion
// (photo.ts) and the network view (network.ts) to the document.

import "./style.css";
import { entries, hooks, render, send } from "./jobs";
import { followNetwork } from "./network";
import { show } from "./results";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

hooks.show = (e) => show(e, $("result"));

function sendFiles(files: FileList | File[]) {
  send(files, $<HTMLSelectElement>("service").value, $("jobs"));
  $("jobs-empty").hidden = entries.length > 0;
}

const drop = $("drop");
for (const id of ["files", "camera"]) {
  const input = $<HTMLInputElement>(id);
  input.addEventListener("change", () => {
    if (input.files?.length) sendFiles(input.files);
    input.value = "";
  });
}
drop.addEventListener("dragover", (ev) => {
  ev.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  if (ev.dataTransfer?.files.length) sendFiles(ev.dataTransfer.files);
});

followNetwork();
// Running jobs' elapsed time.
setInterval(() => entries.filter((e) => e.job?.state === "running" || e.job?.state === "queued").forEach(render), 1000);
