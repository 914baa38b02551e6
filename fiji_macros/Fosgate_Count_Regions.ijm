// Fosgate Count Regions: count the c-fos cells in each brain region and save a CSV table.
//
// Regions are ROIs in the ROI Manager whose names start with "region" (e.g. "region:CA1"; draw them, press T,
// then rename them); "region:HPF/CA1" puts CA1 inside HPF, and a parent counts its children's cells.
// A cell belongs to a region when its centroid lies inside it.
//
// On the server (when a prediction job is known: the last Fosgate Segment run, or job=...): fosgate counts the
// cells of that prediction in the ROI Manager's regions, or in an atlas label image with its names table
// (regions=/path/atlas.tif;names=/path/structures.csv or Allen ontology .json, e.g. exported by ABBA), with
// the hierarchy rolled up. Table: region_id,name,acronym,parent_id,depth,cells,cells_own,area_px,area_mm2,
// density_per_mm2 (docs/fiji.md).
// Here in ImageJ (no job known, or local=1): counts the ROI Manager's non-region ROIs (cells) per region ROI.
// Table: region,cells,area_px,cells_per_megapixel.
//
// Scripted: ImageJ -batch Fosgate_Count_Regions.ijm "image=/path/img.tif;rois=/path/RoiSet.zip;csv=/path/out.csv"
//           (in ImageJ), or add "server=HOST:PORT;fosgate=/path/fosgate;job=jb_...;result=/path/result.txt"
//           (on the server; regions=FILE and names=FILE instead of the ROI Manager for atlas maps).

var result = "";
var csv = "";
var job = "";
var exe = "fosgate";
var server = "";
var regionsFile = "";
var names = "";

args = getArgument();
image = argOr(args, "image", "");
rois = argOr(args, "rois", "");
csv = argOr(args, "csv", "");
result = argOr(args, "result", "");
server = argOr(args, "server", call("ij.Prefs.get", "fosgate.server", "127.0.0.1:50051"));
exe = argOr(args, "fosgate", call("ij.Prefs.get", "fosgate.program", "fosgate"));
regionsFile = argOr(args, "regions", "");
names = argOr(args, "names", "");
here = false;
localArg = argOr(args, "local", "0");
if (localArg == "1") here = true;
job = "";
if (args == "") job = call("ij.Prefs.get", "fosgate.lastjob", "");
job = argOr(args, "job", job);
if (args == "" && job != "") {
  Dialog.create("fosgate: count cells per region");
  Dialog.addMessage("Count on the fosgate server the cells of prediction job " + job + "\n(the last Fosgate Segment run)?");
  Dialog.addCheckbox("Count here in ImageJ instead", false);
  Dialog.show();
  here = Dialog.getCheckbox();
}
if (here) job = "";

if (image != "") open(image);
if (rois != "") { roiManager("reset"); roiManager("Open", rois); }
if (job == "" && nImages == 0) fail("Open the image first.");
if (csv == "") {
  if (nImages > 0) csv = getDirectory("image") + File.getNameWithoutExtension(getTitle()) + ".regions.csv";
  else csv = getDirectory("temp") + "fosgate" + File.separator + "regions.csv";
  if (args == "") csv = File.saveDialog("Save the region counts as", csv);
}

if (job != "") countOnServer();
else countHere();

// ---------------------------------------------------------------- on the server
function countOnServer() {
  work = getDirectory("temp") + "fosgate" + File.separator;
  File.makeDirectory(work);
  regions = regionsFile;
  if (regions == "") {
    if (roiManager("count") == 0) fail("The ROI Manager is empty; draw the regions (named region:...) first.");
    regions = work + "regions-" + getTime() + ".zip";
    roiManager("deselect");
    roiManager("Save", regions);  // the server keeps the ROIs named region... and ignores the cells
  }
  out = work + "regions-" + job;
  File.makeDirectory(out);
  showStatus("fosgate: counting cells per region on the server ...");
  if (names != "")
    reply = exec(exe, "count-regions", "--server", server, "--job", job, "--regions", regions, "--region-names",
                 names, "--out", out, "--json");
  else
    reply = exec(exe, "count-regions", "--server", server, "--job", job, "--regions", regions, "--out", out, "--json");
  if (indexOf(reply, "\"error\"") >= 0 || indexOf(reply, "\"regions_csv\"") < 0) fail(errorOf(reply));
  table = File.openAsString(jsonString(reply, "regions_csv"));
  File.saveString(table, csv);
  inside = jsonNumber(reply, "cells_in_regions");
  outside = jsonNumber(reply, "cells_outside_regions");
  msg = "fosgate: " + inside + " cells in " + jsonNumber(reply, "regions") + " region(s), " + outside + " outside";
  showStatus(msg);
  print(msg);
  print("fosgate: region counts saved to " + csv);
  print(table);
  if (result != "") File.saveString("csv=" + csv + "\ncells_in_regions=" + inside + "\ncells_outside=" + outside + "\n", result);
}

// ---------------------------------------------------------------- here in ImageJ
function countHere() {
  n = roiManager("count");
  regions = newArray(0);
  cx = newArray(0);
  cy = newArray(0);
  for (i = 0; i < n; i++) {
    if (startsWith(toLowerCase(RoiManager.getName(i)), "region")) {
      regions = Array.concat(regions, i);
    } else {
      roiManager("select", i);
      List.setMeasurements;
      x = List.getValue("X"); y = List.getValue("Y");
      toUnscaled(x, y);
      cx = Array.concat(cx, x); cy = Array.concat(cy, y);
    }
  }
  if (regions.length == 0) fail("no ROI is named 'region...'; name your regions first.");
  table = "region,cells,area_px,cells_per_megapixel\n";
  for (r = 0; r < regions.length; r++) {
    roiManager("select", regions[r]);
    name = RoiManager.getName(regions[r]);
    count = 0;
    for (c = 0; c < cx.length; c++) if (selectionContains(cx[c] - 0.5, cy[c] - 0.5)) count++;
    getStatistics(area);
    getPixelSize(unit, pw, ph);
    area = area / (pw * ph);
    table = table + name + "," + count + "," + d2s(area, 0) + "," + d2s(count / area * 1e6, 3) + "\n";
  }
  roiManager("deselect");
  File.saveString(table, csv);
  print("fosgate: region counts saved to " + csv);
  print(table);
  if (result != "") File.saveString("csv=" + csv + "\n", result);
}

// ---------------------------------------------------------------- helpers
function argOr(text, key, fallback) {
  parts = split(text, ";");
  for (i = 0; i < parts.length; i++) {
    kv = split(parts[i], "=");
    if (kv.length >= 2 && String.trim(kv[0]) == key) return substring(parts[i], indexOf(parts[i], "=") + 1);
  }
  return fallback;
}
function jsonString(text, key) {
  i = indexOf(text, "\"" + key + "\": \"");
  if (i < 0) return "";
  s = substring(text, i + lengthOf(key) + 5);
  return substring(s, 0, indexOf(s, "\""));
}
function jsonNumber(text, key) {
  i = indexOf(text, "\"" + key + "\":");
  if (i < 0) return "NaN";
  s = String.trim(substring(text, i + lengthOf(key) + 3));
  j = 0;
  while (j < lengthOf(s) && indexOf("0123456789.-", substring(s, j, j + 1)) >= 0) j++;
  return substring(s, 0, j);
}
function errorOf(text) {
  i = indexOf(text, "\"error\": \"");
  if (i < 0) {
    if (text == "") return "The fosgate program did not answer. Is '" + exe + "' installed? (see Fosgate Segment)";
    return "fosgate failed: " + text;
  }
  s = substring(text, i + 10);
  return substring(s, 0, indexOf(s, "\""));
}
function fail(message) {
  if (result != "") File.saveString("error=" + message + "\n", result);
  if (is("Batch Mode") || getArgument() != "") { print("fosgate: " + message); exit; }
  exit("fosgate: " + message);
}
