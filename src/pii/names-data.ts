/**
 * Compact gazetteers for person names, written for this engine (no third-party list). Lowercase, accents kept;
 * split on whitespace when loaded. Lists are deliberately small: the detector leans on context cues for names
 * that are not here, and a large list of rare names would mostly add English words.
 */

/** Given names common in the UK, US, Ireland, Europe, Africa, South Asia, the Middle East and East Asia. */
export const FIRST_NAMES = `
aaliyah aaron abby abdul abdullah abel abhishek abigail abraham ada adam adaeze adebayo adeel adel adele adeola
adewale adil aditi aditya adnan adrian adriana adrienne afia afua agata agnes agnieszka ahmad ahmed ahmet aidan aiden
aileen aimee ainhoa aisha aishwarya aisling aiyana ajay akash akira akosua akua al alan alana alastair albert alberto
alejandra alejandro aleksandra alessandra alessandro alex alexa alexander alexandra alexandre alexis alfie alfred
alfredo ali alice alicia alina alisha alison alistair aliyah allan allison alma alvaro alyssa amaka amal amanda amara
amari amber amelia amelie amina amir amit amy ana anastasia anders andile andre andrea andreas andrei andres andrew
andrzej andy aneta angel angela angelica angelina angelo angus anika anil anita anja anjali ann anna annabel annabelle
anne anneke annette annie anoushka ansel anthony antoine anton antonia antonio anya aoife april arabella archie ari
aria ariana ariel arjun arlo armando arnav arno arthur arturo arun arya asa asha ashley ashok ashton asif asma astrid
aurora austin ava avery axel ayaan ayesha ayla aylin ayo ayodele ayumi azadeh babajide bahar barbara barney barry bart
basia basil bastian bea beata beatrice beatriz becca becky bella ben benedict benjamin benoit bernadette bernard
bethan bethany betty beverley bianca bilal billie billy bjorn blake blessing bogdan bola bolaji bonnie boris brad
bradley brandon brenda brendan brian briana bridget brigid britney brittany brooke bruce bruno bryan bukola caitlin
caleb callum cameron camila camille candice cara carina carl carla carlos carly carmen carol carolina caroline
carolyn caroline casey cassandra cassie catalina catherine cathy cecilia cedric celia celine chantal charlene
charles charlie charlotte chelsea cheng cheryl chiamaka chidi chidinma chinedu chinonso chioma chloe chloé chris
chrissy christian christina christine christopher chuka chukwuemeka ciara ciarán cillian cindy claire clara clare
claudia clement clodagh colin colleen conor connor constance cora corinne craig cristina cristian cynthia cyrus dafydd
daisy dale damian damien dan dana dane daniel daniela daniele danielle danny daphne dara darius darko darragh darren
dave davide davina dawid debbie deborah declan deepa deepak deirdre delia demi denis denise dennis derek desmond
devon dexter dhruv diana diane diego dilip dimitri dina dinesh divya dmitri dolores dominic dominik dominika donal
donna doreen doris dorothy dougal douglas duncan dylan eamon ebony ed eddie edgar edith edmund eduardo edward
edwin efua eileen ekaterina elaine eleanor elena eli elias elif elijah elin elisa elisabeth elise eliza elizabeth
ella ellen ellie elliot elliott elly eloise elsa elsie emeka emil emilia emilie emily emine emir emma emmanuel enrique
enzo eoin erik erika erin ernest esme esmé esra esther ethan eugene eunice eva evan evelyn evie ewa ezra fabian fahad
faisal farah farhan farida fatima fatma fay felicity felix femi fenella fergus fernando finlay finn fiona fionn
florence florian folake francesca francesco francis francisco franco frank frankie franziska fraser freddie
frederick freya funke funmilayo gabriel gabriela gabriella gabrielle gareth garry gary gavin gemma genevieve geoff
geoffrey george georgia georgina gerald geraldine gerard gerry gianluca gideon gillian gina giorgio giovanni giulia
giuseppe gladys glen glenn gloria gordon graham grainne gráinne grant greg gregory greta gustav gwen gwyneth hadley
hai hailey haley hamid hamish hamza hana hank hannah hans haris harold harper harriet harrison harry harvey hassan
hayden hayley hazel heather hector heidi helen helena helga henrik henry hiroshi hollie howard hugh hugo humza hussain
ian ibrahim ida ifeoma ignacio igor ilse imani imogen imran ines inés inga inge ingrid ioana iqbal irene irina iris
isaac isabel isabella isabelle isaiah isla ismail ivan ivana izabela jack jackie jackson jacob jacqueline jade jaden
jaime jake jamal james jamie jan jana jane janet janice janina jannik jasmine jason javier jay jayden jean jeanette
jeff jeffrey jelena jenna jennifer jenny jeremy jerome jess jesse jessica jill jim jimmy jo joan joanna joanne jocelyn
jodie joe joel joey johan johann johanna john johnny jon jonah jonas jonathan jordan jorge jose josé josef joseph
josephine josh joshua josie joyce juan judith judy jules julia julian juliana julie julien julio julius jun
jurgen justin justine kacper kai kaitlyn kamal kamala kamil karan karen karim karin karina karl karolina kasia
kate katarzyna katharine katherine kathleen kathryn kathy katie katrina kay kayla keira keith kelechi kelly kelvin
ken kenji kenneth kenny kerry kevin khadija khalid kiara kieran kim kimberly kirsty kobe kofi kwabena kwame kwasi
kyle laila lakshmi lana lara larissa laura lauren laurence layla leah leandro leila lena leo leon leona leonardo
leonie les lesley leslie lewis lexi liam lila lilly lina linda lindsay lindsey linh lisa liv livia liz liza lizzie
logan lois lola lorcan lorena lorenzo lori lorraine lottie louis louisa louise lucas lucia lucía lucian lucy luigi
luis luisa luka lukas lukasz łukasz luna lydia lynn lynne maciej mackenzie maddie madeleine madison magda magdalena
maggie magnus mahmoud maisie maja makayla malcolm malgorzata małgorzata malik mamadou mandy manoj manon manuel
manuela marc marcel marcela marcin marco marcus margaret margarita maria maría mariam marian marie mariel marina
mario marion marisa marissa marjorie marlon marta martha martin martina marty marwa mary maryam mason mateo mateusz
matilda matt matteo matthew matthias maureen maurice maximilian maya megan mehmet mei meera megan melanie melissa
mercy meredith mia michael michaela micheal michel michelle miguel mihai mika mikael mike mikołaj milan mila miles
milo mina minh miriam mitchell mo mohamed mohammad mohammed moira molly monica monika morgan moritz muhammad murray
mustafa nadia nadine naledi nancy naomi nasir natalia natalie natasha nathan nathaniel neha neil nell nellie
ngozi nguyen niall nick nicki nicola nicolas nicole nikhil niklas nikolai nikos nina nisha nkechi noah noel noor
nora norah noura nuala nur obinna ola olamide olga oli olivia oliver ollie oluwaseun oluwatobi omar oona orla
orlaith oscar osman owen pablo padraig pádraig paige paloma pamela paola paolo parisa parveen pascal patrice patricia
patrick paula paulina pauline pavel pawel paweł pedro peggy penelope percy pete peter petra philip philippa phillip
phoebe pierre piotr pippa pooja poppy prakash pranav preeti prem priscilla priya priyanka rachel rafael rafał rahel
rahul raj rajesh ralph ramon ramona rana randy raphael rashid raul raúl ravi rayan rebecca rebekah reem reggie
rehan reza rhiannon rhys ricardo richard rick ricky riley rita rob robbie robert roberta roberto robin rocco rohan
roisin róisín roman romeo ronan ronald ronnie rory rosa rosalind rosie ross rowan roxanne roy ruairi rubén rudy
rupert ruth ryan saanvi sabine sabrina sacha sadia saeed safiya sahil saira sajid sakura salim sally salma sam
samantha sami samir samira samuel sana sandeep sandra sanjay santiago sara sarah saoirse sasha saskia scarlett scott
sean seán sebastian selin selina seren serena sergei sergio seun shabnam shane shannon sharon shaun shauna sheila
shelby shirley shivani shreya sian siân sibusiso sienna silvia simon simone sinead sinéad siobhan siobhán siti sofia
sofía sonia sonja sophia sophie stacey stanley stefan stefanie stella stephanie stephen steve steven stuart sue
suki sunil susan susanne suzanne svetlana sven sylvia tamara tamsin tanisha tanya tara tariq tatiana taylor ted
teddy temitope teresa terri terry tess tessa thabo thea theo theodore theresa thomas tiago tim timothy tina toby
tobi tom tomas tomás tomasz tommy toni tony tracey tracy trevor tristan tunde tyler ugo ursula usman uzma valentina
valentino valeria vanessa varun vera veronica vicky victor victoria vijay vikram vincent viola violet vivek vivian
vladimir wanjiru wanda wayne wei wendy wesley wiktoria wilhelmina william willow wojciech xavier xin yaa yannick
yasmin yasmine yemi yetunde yiannis yolanda yosef youssef yusuf yuki yvonne zac zach zachary zainab zak zara zayn
zeynep zoe zoë zofia zuzanna niamh aoibhinn caoimhe eimear sorcha maeve oisín oisin cian tadhg ruairí fiachra
sadhbh méabh éabha caitríona síle dearbhla eilís fionnuala mairéad peadar seamus séamus diarmuid donnacha colm
cathal aoibheann ríona pieter joost bram sander thijs sem daan lotte sanne femke anouk fleur lieke maarten wouter
jeroen niels ruben kees henk geert marloes mieke noortje astrid lars freja linnea elin ebba nils oskar alva tove
sigrid ole mette kirsten kasper rasmus mads frederik sofie anders ingeborg solveig dev ollie tabitha kieran jonas
aarav vihaan reyansh ishaan advait arnav anaya diya myra kiara ira ishita aadhya
tigist dawit selam abebe yohannes mekdes chidubem chinwe uchenna olumide oluwakemi ayomide damilola tobenna zanele
thandiwe lerato sipho bongani nomvula kagiso mateus thiago joão joao gonçalo inês beatriz leticia letícia rafaela
camilo valentín matías sebastián joaquín ximena renata luciana ignacio agustín florencia bruna gabriel giovanna
vitória otávio caio davi enzo heitor lorenzo benício bernardo emanuele giacomo tommaso chiara ginevra beatrice
aurora alessia federica jakub szymon filip antoni zuzanna hanna oliwia maja lena amelia wojtek gosia kasia marek
tomek ania ola jürgen jörg björn sören søren åsa maëlle anaïs célia océane mathéo théo noé loïc gaël hélène
élodie émilie andré françois jérôme renée dmitri yaroslav oksana olena taras bohdan anastasiia nikita artem
aleksei alexei sveta katya natasha mikhail yuri irina galina ayşe zeynep mehmet emre burak elif hakan deniz
văn thị đức hữu
abbie adaline addison adriel alaina alayna alec aleena alexia alexandria alfonso alia allie alondra alvin amani
amaya amelie amira ana-maria anabel analia anastacia andreea annika ansley antonella ariadne arianna arielle armani
arturo aryan ashlyn aspen athena aubree aubrey audrey augustus avalon averie ayden aylin beau beckett bella-rose
benedikt bennett bethan bianka blaine bodhi braden braxton brayden brenna briar bridie brody bronwen bryce brynn
cadence caden caitlyn callie camden camryn carmela carolyn carson casper cassidy cecil celeste cerys chanel
charis charley charlie-rose chase chaya cheyenne ciaran clarissa clementine cody colton conall cooper cora-lee corey
cormac cristiano cyrus dakota dalia damon dana-marie danica dante darcy darius dawson deacon delaney delilah denise
desiree devin dexter diya dominick donovan dorian drake duncan eamonn easton eden eleanor elena elianna eliot
eliza-jane ellis elodie eloise elowen emerson emery emilia-rose emmett ennis enya ephraim esmeralda estelle ethel
evangeline everett evelyn-rose ezekiel fabio faye felipe fernanda fiadh finnley fletcher flynn francesca frida
gaia gareth garrett genesis gianna giselle gracie-mae grayson greer gulliver gwendolyn hadassah harlow harley
harrison hattie haven heidi hollie-mae hudson hunter-james ibrahim idris iker ilyas imran indie iona isabela
isaiah isadora ivy-rose izzy jacinta jaden jagger jaiden jamal jameson jasper jaxon jayla jaylen jemima jenson
jensen jessie joaquin jocelyn johanna jolene jonah jordyn josephine josiah jovan judah juniper kaden kaia kailey
kairo kaiya kaleb kamila kane karim karter kasey kayden keegan keeley kelsey kendall kendra kenji kenzie khalil
kian kiera kingsley kinsley kit koa kobe kyla kylie laila lainey landon lane lacey laurel layla-rose leilani
lennon lennox leona leonie levi lexie liliana lincoln lionel lorelai lorenzo luca lucian lucille lyla lyra
macy madeline madelyn maeve magnus maisy makenzie malachi malakai marcel marcus mariana marley marlowe mateo
matilda-rose maxwell mckenzie meadow mikayla milana miles millie milo mira miriam mohammad-ali monroe morgan-lee
nadia nash nathalie nayeli nevaeh nico nikolai nina noa noelle nolan nyla octavia olive-mae oliwier orion orla
otis paisley paloma parker pascale paxton payton penelope peyton phoenix pierce piper poppy-mae presley priya
quentin quinn raegan raelynn raiden raphael reagan reese reid remi remington rhea rhys riley-jay river-james
roisin roman ronan rory rosalie rowan ruby-mae rylan ryder sabrina sadie saffron salome samson santiago sawyer
scarlet selena serenity shiloh sienna silas sloane sofia-rose solomon sonny-james stella stevie sullivan sutton
sybil talia tatum teagan tessa thalia theodora thiago tilly titus tobias tommy-lee toby tristan tucker tyson
valentina vanessa vera vivienne wade walker warren waylon wesley weston wilder willa winston wren-rose wyatt
xander ximena yara yasmin yusra zachariah zaid zain zander zane zara zayden zelda zion zoey zuri
aarush advik anvi arya ayansh dhruv hrithik ishan kabir krish myra navya nirav parth pranav riya rudra saanvi
sai shaurya siddharth tanvi vivaan yash zoya aisha-bibi amna anum ayesha-rose farhan hamza haroon hina iman
jibril khadijah laiba maham mariam mehwish nabeel naveed nida rabia rehana saad sadia sameer sanaa shahid sumaira
tahir waqar yasir zeeshan chinedu chibuzo chidi chika chinonso ebere ejike ekene emeka ifeanyi ikenna kamsi
nnamdi obi onyeka uche uzoma adaeze amara chiamaka chioma ifunanya nneka obiageli oge ngozi adunni ayodeji
babatunde bisi dayo folasade funmi gbenga jide kehinde kunle lola olu segun taiwo tolu wale yinka abena adwoa
akosua ama efua esi kojo kwaku kwabena yaw kofi nana thandeka themba zodwa nkosi lwazi palesa lindiwe zinhle
nomsa ayanda siyabonga mandla bheki kagiso refilwe tumelo amani baraka jabari jamila kamau njeri wambui wanjiku
akinyi otieno achieng wairimu mwangi haile kidus liya meron saba selam tsion yonas bereket
wei-ling xiao mei-lin jia hui ying chen-yu zhi hao li-na yu-xuan jun-hao kai-wen minh-anh thu huong lan linh-chi
quynh trang tuan duc hieu khanh bao ngoc phuc hoa mai an-nhien haruki hiro kaito kenta ren riku sora takumi yuto
yuna hina aoi mei-ling rin sakura-ko miyu nanami seo-yeon ji-woo min-jun seo-jun ha-eun do-yun ji-ho eun-ji
hye-jin soo-ah jae-won
aleksander bartosz dominik grzegorz jakub jan-pawel kamil krzysztof maciej marek michal michał patryk pawel piotr
przemek rafal szymon tomek wojtek agata agnieszka alicja anna-maria basia dorota ewelina gosia iwona joanna kasia
kinga magda marta monika natalia paulina sylwia zofia zuzia oana ioana andrei bogdan cristian florin mihai radu
sorin vlad alina bianca cristina diana elena irina roxana simona sofia-maria ngọc thanh quang tuấn hương phương trang thảo duc huong phuong
`;

/**
 * Given names that are also ordinary English words (or very common as something else). Recognised only with a
 * cue ("my daughter Grace", "with Will", "Mark said"), never on the word alone.
 */
export const WORD_NAMES = `
will mark grace hope rose joy bill may june april faith amber dawn summer art frank pat sue ray rich jack bob sky
rob don guy penny ruby jade holly ivy lily daisy iris autumn crystal honey destiny chance chase hunter carter mason
cole drew gene earl dean chip buck rod nick norm max sunny bud rusty dusty sandy misty storm river ash ash heath
clay forest glen lane reed rocky sonny star violet jasmine olive hazel pearl rusty jean bonnie charity patience
prudence constance mercy felicity harmony melody verity trinity angel angela christian christy kim kay jan sam
taylor jordan morgan ryan paige page eve ed al les su li an bo sage rain skye blue miles earnest ernest august sterling dallas austin paris india georgia virginia
florence chelsea brooklyn victoria regan carol jo val van rick ricky josh robin robins wren
grant blessing genesis haven serenity phoenix walker scarlet pierce wade warren wilder meadow cadence juniper saffron
paisley laurel heather basil poppy willow viola marina margarita aria briar kit tucker cooper drake deacon emery
piper sawyer jasper aspen beau
`;

/**
 * Family names common in the UK, US, Ireland, Europe, Africa, South Asia, the Middle East and East Asia. Used to
 * extend a given name into a full name and, capitalised after a title (Mrs Patel), on their own.
 */
export const SURNAMES = `
abbott abdullah adams adeyemi ahmed akhtar al-sayed alexander ali allen anderson andrews armstrong arnold atkinson
bailey baker ball banda banerjee barker barnes barrett bates becker begum bell bennett berg bernard bianchi
bishop black blake bond booth bowen boyle bradley brennan brooks brown bruno burke burns butler byrne campbell
carter chan chapman chatterjee chen cheng clark clarke cohen cole coleman collins conti cook cooper costa cox
crawford cunningham dang das davies davis dawson de la cruz dhillon diaz dixon doherty douglas doyle dubois duncan
dunn dupont edwards ellis evans farah farrell ferguson fernandes fernandez ferrari fischer fisher fitzgerald
fleming fletcher flynn ford foster fox francis fraser fuchs gallagher garcia gardner ghosh gibson gill gomez gonzalez
gordon graham grant gray green griffin griffiths gupta hall hamilton hansen harris harrison hart hartmann harvey
hassan hayes henderson hernandez hill hoang hoffmann holmes hossain howard hughes hunt hussain hussein iqbal
ivanov jackson jain james jankowski jansen jenkins jensen johnson johnston jones joseph joshi kaur kaminski
kamińska kaminska kamiński kaur kelly kennedy khan khalil kim king knight koch kowalczyk kowalska kowalski kozlov
kumar lambert lane larsen lawrence lawson le lê lee lewandowski lewandowska lewis li lin liu lloyd lopez lopes
lozano lynch macdonald mackenzie mahmood malik marshall martin martinez mason matthews mcdonald mcgrath mckenzie
mclaughlin mehta meyer miller mills mitchell mohamed moore moreno morgan morris moss murphy murray mwangi nair
nel nguyen nguyễn nielsen noor novak nowak nowakowska o'brien o'connor o'neill o'sullivan obi odhiambo ogunleye
okafor okeke okonkwo okoro oliveira olsen onyango osei owen owens palmer park parker parry patel pearson perez
perry peters petersen phillips phan phạm pillai poole popescu porter powell price quinn rahman ramirez ramos rao
reddy reid reyes reynolds rezaei ricci richards richardson riley roberts robertson robinson rodriguez rogers romano
rossi russell ryan saunders schmidt schneider schulz scott shah sharma shaw silva simmons simpson singh smith
sokolov stevens stewart sullivan sutherland suzuki szabo tanaka taylor thomas thompson thomson tran trần turner
van vargas vasquez verma walker walsh wang ward watson webb weber white wiśniewska wiśniewski wisniewska wisniewski
williams willis wilson wojcik wójcik wong wood wright wu yamamoto yang yilmaz young zhang zhao zielinski zieliński
zielińska
`;

/**
 * Figures the labeling contract says are not private individuals: biblical, historical, fictional and famous.
 * A single token here is dropped unless a private-person cue overrides it (my son Noah, Dear David).
 */
export const BIBLICAL_FIGURES = `
aaron abel abigail abraham absalom adam ahab amos andrew barnabas bartholomew bathsheba benjamin boaz caleb cain
daniel david deborah delilah eli elijah elisha elizabeth enoch esau esther eve ezekiel ezra gabriel gideon goliath
hagar hannah herod hosea isaac isaiah ishmael jacob james jephthah jeremiah jesse jesus jezebel job joel john jonah
jonathan joseph joshua judas jude judah laban lazarus leah levi lot luke malachi martha mary matthew matthias
methuselah micah miriam mordecai moses naomi nathan nathanael nehemiah nicodemus noah obadiah paul peter pharaoh
philemon philip pilate rachel rahab rebekah rebecca ruth samson samuel sarah saul silas simeon simon solomon
stephen thaddeus thomas timothy titus uriah zacchaeus zechariah zephaniah zerubbabel god christ mark lydia priscilla
aquila apollos cornelius jairus tabitha dorcas ananias sapphira eunice phoebe junia rhoda salome anna simeon
onesimus demas joanna susanna bartimaeus caiaphas annas herodias festus agrippa gamaliel erastus tychicus epaphras
seth shem japheth abram sarai dinah reuben naphtali asher issachar zebulun ephraim manasseh tamar jael barak orpah
michal haman shadrach meshach abednego nebuchadnezzar elkanah hezekiah josiah jehoshaphat nahum habakkuk haggai
`;

/** Famous people by a distinctive single name, in lowercase; never a private person's name on its own. */
export const FAMOUS_PEOPLE = `
einstein shakespeare newton darwin napoleon churchill gandhi mandela beethoven mozart picasso galileo tolkien
dickens obama trump biden thatcher beyoncé beyonce rihanna kipchoge djokovic ronaldo messi beckham oprah elvis
lennon mccartney freud plato aristotle socrates confucius buddha tolstoy hemingway orwell rowling hermione
dumbledore frodo gandalf sherlock batman superman spiderman spurgeon goggins kardashian zuckerberg musk bezos
nietzsche kierkegaard aquinas augustine bonhoeffer tozer
`;

/** Names so strongly biblical that only "my son Moses" or "my name is Moses" makes them a private person. */
export const STRONGLY_BIBLICAL = `
moses jesus christ pharaoh goliath methuselah nebuchadnezzar herod pilate judas lazarus isaiah jeremiah ezekiel
elisha habakkuk boaz barnabas bathsheba jezebel delilah samson solomon absalom mordecai nicodemus zacchaeus cain
abraham noah's habakkuk zerubbabel obadiah nehemiah zechariah zephaniah malachi haggai nahum jephthah gideon
ishmael esau laban rahab uriah jairus philemon apollos aquila thaddeus bartholomew
`;

/** Lowercase forms of given names that are common as other words; lowercase only with a cue. */
export const LOWERCASE_UNSAFE = `
al ali ana an bea dana eli ida jan kai kay ken kim lee les li lina lois luna maja mina mo nell noel nur ola rana
reza sami sana sasha seren siti tess tina toni ugo vera viola wei xin yaa jun hai linh minh mei nina nora ada
asa ava bo cara carmen dawn dale ed elsa ena eva iris jo lola lou mae ray rey rosa sol taj tam teo val van
matt sally ken ebony roman clement noel randy hank bola yaw jay
`;

/** Family names that are also common English words: a surname on its own only after a title or a given name. */
export const SURNAME_WORDS = `
baker cook bell hill wood green white black brown young king hunt ward rose lane mills moss bond ball fox price
hart gill knight marshall mason porter turner walker fisher butler cooper carter parker palmer shaw wall page long
grant hall field ford bishop little love joy best rich wells banks stone rivers brooks hope gray grey golden shepherd
sharp swift short strong wise street church chase cross page steel frost snow winter summers may march english
french north south west east lamb fish bird crane drake hawk wolf bush lee park ryan james thomas lewis morgan
owen jordan taylor bailey riley scott kelly grant burns booth cox foster griffin lynch miller smith wright
barker berg bates parry peters rogers van la
`;

/** Capitalised words that name an institution, not a person, when they follow a name (Khan Academy). */
export const INSTITUTION_WORDS = `
academy university college school institute street road avenue lane hospital clinic church chapel centre center
park club gym fc united city bank foundation trust group ltd inc llc plc app pharmacy surgery station airport
stadium arena hall house museum library gallery cafe café restaurant hotel studios studio press media labs
`;

/** Fictional characters (lowercase, full or single), excluded in a text about books, films or stories. */
export const FICTIONAL_NAMES = [
  'harry potter',
  'hermione',
  'hermione granger',
  'ron weasley',
  'matilda',
  'honey',
  'miss honey',
  'trunchbull',
  'willy wonka',
  'charlie bucket',
  'bfg',
  'sophie',
  'james',
  'danny',
  'fantastic mr fox',
  'alice',
  'dorothy',
  'heidi',
  'pippi',
  'juliet',
  'romeo',
  'hamlet',
  'macbeth',
  'ophelia',
  'oliver twist',
  'scrooge',
  'tiny tim',
  'pip',
  'atticus',
  'atticus finch',
  'scout',
  'boo radley',
  'gatsby',
  'jay gatsby',
  'elizabeth bennet',
  'darcy',
  'mr darcy',
  'jane eyre',
  'frankenstein',
  'dracula',
  'sherlock',
  'sherlock holmes',
  'watson',
  'katniss',
  'peeta',
  'elsa',
  'anna',
  'olaf',
  'moana',
  'simba',
  'shrek',
  'pinocchio',
  'cinderella',
  'rapunzel',
  'ariel',
  'belle',
  'aslan',
  'lucy',
  'edmund',
  'peter',
  'susan',
  'gollum',
  'bilbo',
  'frodo',
  'paddington',
  'winnie',
  'piglet',
  'eeyore',
  'tigger',
  'peppa',
  'george',
  'gruffalo',
  'greg heffley',
  'tracy beaker',
  'horrid henry',
  'percy jackson',
  'annabeth',
  'wednesday',
  'mowgli',
  'bagheera',
  'baloo',
  'charlotte',
  'wilbur',
  'fern',
  'stanley yelnats',
  'holden',
  'gandalf',
  'dumbledore',
  'snape',
  'voldemort',
  'hagrid',
  'neville',
  'luna',
  'draco',
];

/** Capitalised words that are not names: pronouns, greetings, days, months, faith terms, places, brands. */
export const NOT_NAMES = `
i im i'm i'd i'll i've the a an and but so or if then when what why how who where which this that these those
my your our his her their it its we you he she they me us him them hi hello hey hiya dear thanks thank yes no ok
okay please sorry well just also today tomorrow yesterday tonight monday tuesday wednesday thursday friday
saturday sunday mon tue tues wed thu thur thurs fri sat sun january february march august september october
november december jan feb mar apr jun jul aug sep sept oct nov dec god lord jesus christ bible scripture
scriptures christmas easter lent advent pentecost ramadan eid diwali hanukkah passover sabbath holy spirit ghost
heaven hell satan devil amen hallelujah psalm psalms gospel gospels testament old new english british american
irish scottish welsh french german spanish italian polish dutch chinese indian african european asian christian
muslim jewish hindu catholic protestant baptist methodist anglican mum mom dad mummy mommy daddy mama papa nan
nana gran granny grandma grandpa grandad coach doctor dr mr mrs ms miss mx sir madam prof team week day run
parkrun strava garmin fitbit apple google instagram facebook tiktok youtube whatsapp snapchat twitter nhs gp uk
us usa eu london manchester birmingham leeds glasgow edinburgh cardiff belfast dublin paris berlin madrid rome
york new yorker texas california england scotland wales ireland britain europe africa asia america canada
australia is was are be do did does have has had can could would should will shall may might must not never
always very really oh ah wow lol haha hmm um uh omg btw tbh idk ps pps re fwd note update chapter verse book
king queen prince princess apostle prophet saint st pharaoh church mass bbc itv cnn covid corona zoom teams
slack chatgpt ai bot assistant therapist counsellor trainer tutor teacher maths math english science history
geography physics chemistry biology art music pe rsvp ok km kg bpm hr ftp vo2 zone pb pr amrap emom hiit wod
yoga pilates crossfit marathon half 5k 10k question answer step day one two three four five six seven eight
nine ten first second third last next morning evening afternoon night lunch dinner breakfast summer winter
spring autumn fall love hope peace joy grace faith mercy são santa santo san los las fort mount lake cape port
year years grade class form level stage key week weeks month months unit units lesson part section exercise
task tasks question questions round rounds set sets rep reps mile miles kilometre km goal goals challenge day days
`;

/** Famous full names whose tokens are otherwise ordinary names (Taylor Swift, Michael Jordan). */
export const FAMOUS_FULL_NAMES = [
  'taylor swift',
  'michael jordan',
  'serena williams',
  'venus williams',
  'usain bolt',
  'mo farah',
  'eliud kipchoge',
  'paula radcliffe',
  'joe wicks',
  'david goggins',
  'martin luther king',
  'martin luther',
  'mother teresa',
  'john wesley',
  'c. s. lewis',
  'c.s. lewis',
  'cs lewis',
  'king david',
  'albert einstein',
  'isaac newton',
  'charles darwin',
  'winston churchill',
  'abraham lincoln',
  'nelson mandela',
  'marie curie',
  'florence nightingale',
  'jane austen',
  'charles dickens',
  'william shakespeare',
  'harry potter',
  'barack obama',
  'donald trump',
  'joe biden',
  'elon musk',
  'steve jobs',
  'bill gates',
  'lionel messi',
  'cristiano ronaldo',
  'roger federer',
  'lebron james',
  'tom brady',
  'simone biles',
  'emma raducanu',
  'andy murray',
  'lewis hamilton',
  'marcus rashford',
  'harry kane',
  'ed sheeran',
  'billie eilish',
  'ariana grande',
  'brené brown',
  'brene brown',
  'jordan peterson',
  'tony robbins',
  'eckhart tolle',
  'thich nhat hanh',
  'viktor frankl',
  'carl jung',
  'sigmund freud',
  'timothy keller',
  'tim keller',
  'billy graham',
  'john piper',
  'e.b. white',
  'eric carle',
  'roald dahl',
  'j.k. rowling',
  'jk rowling',
  'a.a. milne',
  'dr seuss',
  'julia donaldson',
  'david walliams',
  'michael morpurgo',
  'jacqueline wilson',
  'enid blyton',
  'beatrix potter',
  'lewis carroll',
  'judith kerr',
  'maurice sendak',
  'jeff kinney',
  'rick riordan',
  'suzanne collins',
  'philip pullman',
  'malorie blackman',
  'cressida cowell',
  'anthony horowitz',
  'liz pichon',
  'tom fletcher',
  'dav pilkey',
  'r.j. palacio',
  'mo willems',
  'oliver jeffers',
  'anne frank',
  'martin luther king jr',
  'rosa parks',
  'frida kahlo',
  'vincent van gogh',
  'leonardo da vinci',
  'katherine johnson',
  'ada lovelace',
  'alan turing',
  'stephen hawking',
  'grace hopper',
  'amelia earhart',
  'neil armstrong',
  'greta thunberg',
  'malala yousafzai',
  'david attenborough',
  'marcus aurelius',
  'henry viii',
  'queen victoria',
  'queen elizabeth',
  'king charles',
  'julius caesar',
  'genghis khan',
  'cleopatra',
];

/** Bible books; a book name followed by a chapter number is a reference, not a person. */
export const BIBLE_BOOKS = `
genesis exodus leviticus numbers deuteronomy joshua judges ruth samuel kings chronicles ezra nehemiah esther job
psalm psalms proverbs ecclesiastes song songs isaiah jeremiah lamentations ezekiel daniel hosea joel amos obadiah
jonah micah nahum habakkuk zephaniah haggai zechariah malachi matthew mark luke john acts romans corinthians
galatians ephesians philippians colossians thessalonians timothy titus philemon hebrews james peter jude revelation
revelations
`;
