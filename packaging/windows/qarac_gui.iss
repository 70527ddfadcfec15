; Inno Setup 6 script: installs the PyInstaller folder (dist\qarac-gui\) for Windows.
; UNTESTED: written from the Linux build; nobody has compiled or run this installer yet.
;
; On Windows, from the repository root, in a clean build venv (see packaging\README.md):
;     py -3.11 -m venv .build-venv
;     .build-venv\Scripts\pip install torch==2.13.0
;     .build-venv\Scripts\pip install ".[demo]" pyinstaller
;     .build-venv\Scripts\pyinstaller --noconfirm packaging\qarac_gui.spec
;     "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 packaging\windows\qarac_gui.iss
; The installer lands in dist\qarac-gui-<version>-windows-x64-setup.exe.
;
; The uninstaller removes only the files this installer put down. The user's runs and settings
; (%LOCALAPPDATA%\qarac_gui), the dataset cache (%LOCALAPPDATA%\qarac_gui\Cache) and the Hugging Face cache
; (%USERPROFILE%\.cache\huggingface) are not listed anywhere below, so they stay.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "qarac_gui"
#define AppExe "qarac-gui.exe"
#define Bundle "..\..\dist\qarac-gui"

[Setup]
; A fixed AppId makes a newer installer upgrade an older install in place; never change it.
AppId={{6B0E3C52-4A1F-4E8B-9C63-2F7D0C9A51E4}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
DefaultDirName={autopf}\qarac-gui
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Per-machine by default (Program Files); the dialog lets a user without admin rights install for themselves.
PrivilegesRequired=admin
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=qarac-gui-{#AppVersion}-windows-x64-setup
SetupIconFile=qarac_gui.ico
UninstallDisplayIcon={app}\{#AppExe}
UninstallDisplayName={#AppName} {#AppVersion}
; Over a gigabyte of files, most of it torch: lzma2 without solid compression keeps memory use sane.
Compression=lzma2/max
SolidCompression=no
WizardStyle=modern

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#Bundle}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExe}"; Comment: "Multi-task fine-tuning of Hugging Face encoders"
Name: "{group}\{#AppName} demo"; Filename: "{app}\{#AppExe}"; Parameters: "--demo"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExe}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Python may leave byte-code caches next to the bundled sources; they are ours, unlike the user's data.
Type: filesandordirs; Name: "{app}\_internal\__pycache__"
